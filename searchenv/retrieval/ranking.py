"""Ranking rules shared by every backend, so they return identical shapes for identical scores.

- Only passages that share at least one term with the query are hits (score > 0), as in Lucene.
- At most ``k`` hits; ``k`` larger than the corpus is fine; ``k == 0`` gives ``[]``.
- Order: score descending, then doc id ascending (string order), including at the k-th place:
  when several passages tie for the last slot, the smallest doc ids win.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searchenv.retrieval.base import Hit

# Longer queries are truncated (for every backend alike): Lucene refuses boolean queries of more
# than 1024 clauses, and no honest search query has hundreds of terms.
MAX_QUERY_TERMS = 256

# Backends fetch k + margin candidates so that ties at the k-th place are usually resolved
# without a second, larger fetch.
TIE_MARGIN = 10

DOC_RANK_FILE = "doc_rank.npy"


def check_k(k: int) -> int:
    """Validate a result count.

    >>> check_k(3)
    3
    >>> check_k(-1)
    Traceback (most recent call last):
    ...
    ValueError: k must be >= 0, got -1
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return int(k)


def check_query(query: str) -> str:
    """``query`` if it is a string, else a ``TypeError`` that says what was given."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    return query


def fetch_size(k: int, n_docs: int) -> int:
    """How many candidates to ask a backend for: k plus a margin for ties, at most the corpus.

    >>> fetch_size(10, 1000), fetch_size(10, 15)
    (20, 15)
    """
    return min(n_docs, k + max(k, TIE_MARGIN))


def doc_rank(doc_ids: Sequence[str]) -> np.ndarray:
    """Position -> rank of that doc id in ascending string order (the tie-break key).

    >>> doc_rank(["b", "a", "c"]).tolist()
    [1, 0, 2]
    """
    n = len(doc_ids)
    ranks = np.empty(n, dtype=np.int64 if n >= 2**31 else np.int32)
    ranks[sorted(range(n), key=doc_ids.__getitem__)] = np.arange(n, dtype=ranks.dtype)
    return ranks


def save_doc_rank(folder: Path, doc_ids: Sequence[str]) -> None:
    """Write each doc id's rank in sorted order, the tie-breaker of every backend."""
    np.save(folder / DOC_RANK_FILE, doc_rank(doc_ids))


def load_doc_rank(folder: Path, n_docs: int) -> np.ndarray:
    """The doc ranks ``save_doc_rank`` wrote, checked against the corpus size."""
    ranks = np.load(folder / DOC_RANK_FILE, mmap_mode="r", allow_pickle=False)
    if ranks.shape != (n_docs,):
        raise ValueError(f"{folder / DOC_RANK_FILE} holds {ranks.shape} ranks for a {n_docs}-doc corpus")
    return ranks


def boundary_is_open(sorted_scores: np.ndarray, k: int, fetched: int, n_docs: int) -> bool:
    """True when passages beyond the fetched ones may tie with the k-th hit.

    ``sorted_scores`` are the fetched candidates' scores, descending. If the fetch was full
    (not the whole corpus) and its last score still equals the k-th score, the tie group may
    continue past what was fetched.

    >>> boundary_is_open(np.array([3.0, 2.0, 2.0]), k=2, fetched=3, n_docs=10)
    True
    >>> boundary_is_open(np.array([3.0, 2.0, 1.0]), k=2, fetched=3, n_docs=10)
    False
    """
    if k == 0 or len(sorted_scores) < fetched or fetched >= n_docs or len(sorted_scores) < k:
        return False
    kth = sorted_scores[k - 1]
    return bool(kth > 0 and sorted_scores[-1] >= kth)


def rank_positions(
    positions: np.ndarray, scores: np.ndarray, k: int, ranks: np.ndarray, doc_ids: Sequence[str]
) -> list[Hit]:
    """Top-k hits among candidate corpus positions, by score desc then doc id asc.

    >>> ranks = doc_rank(["d1", "d0", "d2"])
    >>> rank_positions(np.array([0, 1, 2]), np.array([1.0, 1.0, 0.0]), 5, ranks, ["d1", "d0", "d2"])
    [Hit(doc_id='d0', score=1.0), Hit(doc_id='d1', score=1.0)]
    """
    positions = np.asarray(positions)
    scores = np.asarray(scores)
    keep = scores > 0
    positions, scores = positions[keep], scores[keep]
    order = np.lexsort((ranks[positions], -scores))[:k]
    return [
        Hit(doc_ids[p], float(s))
        for p, s in zip(positions[order].tolist(), scores[order].tolist(), strict=True)
    ]


def rank_scored_ids(doc_ids: Sequence[str], scores: Sequence[float], k: int) -> list[Hit]:
    """Top-k hits from (doc id, score) pairs, by score desc then doc id asc.

    >>> rank_scored_ids(["b", "a", "c"], [2.0, 2.0, 3.0], 2)
    [Hit(doc_id='c', score=3.0), Hit(doc_id='a', score=2.0)]
    """
    pairs = sorted((-float(s), d) for d, s in zip(doc_ids, scores, strict=True) if s > 0)
    return [Hit(d, -neg) for neg, d in pairs[:k]]


def top_by_full_scores(scores: np.ndarray, k: int, ranks: np.ndarray, doc_ids: Sequence[str]) -> list[Hit]:
    """Exact top-k from a full score vector (one score per corpus position)."""
    n = len(scores)
    if k == 0 or n == 0:
        return []
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        # kth == 0 means fewer than k passages match at all: take just those.
        candidates = np.flatnonzero(scores >= kth) if kth > 0 else np.flatnonzero(scores > 0)
    else:
        candidates = np.arange(n)
    return rank_positions(candidates, scores[candidates], k, ranks, doc_ids)
