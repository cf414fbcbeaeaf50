"""Reference backend on the ``rank_bm25`` package, with the same formula as the bm25s default.

``rank_bm25``'s own variants differ from Lucene (BM25Okapi floors negative idf with an epsilon
and multiplies by ``k1 + 1``), so :class:`LuceneBM25` subclasses its ``BM25`` base and overrides
the idf and the scorer. It scans every passage per query term (that is how rank_bm25 works):
fine for tiny corpora and for checking the fast backends' scores, slow beyond ~50k passages.
Scores are float64, the fast backends' float32.

The cache holds the tokenized corpus without pickle (loading a pickle runs whatever code it
names): the distinct terms as JSON, each passage's term ids as one int32 array and the passage
boundaries as an int64 array, read with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchenv.retrieval.base import Hit
from searchenv.retrieval.ranking import (
    MAX_QUERY_TERMS,
    check_k,
    check_query,
    load_doc_rank,
    save_doc_rank,
    top_by_full_scores,
)
from searchenv.retrieval.tokenize import Tokenizer, tokenize_corpus

FORMAT_VERSION = "rank_bm25-2"
VOCAB_FILE = "vocab.json"
TERM_IDS_FILE = "term_ids.npy"
OFFSETS_FILE = "offsets.npy"


def _rank_bm25_base() -> type:
    try:
        from rank_bm25 import BM25
    except ImportError as error:
        raise ImportError("the rank_bm25 backend needs rank-bm25: pip install -e .") from error
    return BM25


def lucene_idf(n_docs: int, doc_freq: int) -> float:
    """Lucene's BM25 idf (never negative).

    >>> round(lucene_idf(10, 1), 4), round(lucene_idf(10, 10), 4)
    (1.9924, 0.0465)
    """
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


def make_lucene_bm25(corpus_terms: list[list[str]], k1: float, b: float) -> Any:
    """A ``rank_bm25.BM25`` subclass instance scoring with Lucene's formula."""
    base = _rank_bm25_base()

    class LuceneBM25(base):  # type: ignore[misc, valid-type]
        def __init__(self, corpus: list[list[str]], k1: float, b: float) -> None:
            self.k1 = k1
            self.b = b
            super().__init__(corpus)
            lengths = np.asarray(self.doc_len, dtype=np.float64)
            # The per-passage part of the denominator does not depend on the query.
            self._length_norm = k1 * (1.0 - b + b * lengths / self.avgdl)

        def _calc_idf(self, nd: dict[str, int]) -> None:
            for word, doc_freq in nd.items():
                self.idf[word] = lucene_idf(self.corpus_size, doc_freq)

        def get_scores(self, query: list[str]) -> np.ndarray:
            score = np.zeros(self.corpus_size)
            for term in query:
                idf = self.idf.get(term)
                if idf is None:
                    continue
                tf = np.array([doc.get(term, 0) for doc in self.doc_freqs], dtype=np.float64)
                score += idf * (tf / (tf + self._length_norm))
            return score

        def get_batch_scores(self, query: list[str], doc_ids: list[int]) -> list[float]:
            return self.get_scores(query)[doc_ids].tolist()

    return LuceneBM25(corpus_terms, k1, b)


def load_corpus_terms(folder: Path) -> list[list[str]]:
    """Each passage's terms, in corpus order, from the files :meth:`RankBM25Retriever.build` wrote.

    Args:
        folder: The index folder.

    Returns:
        One list of terms per passage.

    Raises:
        ValueError: The files do not fit together.
    """
    vocab = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
    term_ids = np.load(folder / TERM_IDS_FILE, allow_pickle=False)
    offsets = np.load(folder / OFFSETS_FILE, allow_pickle=False)
    if not (isinstance(vocab, list) and all(isinstance(term, str) for term in vocab)):
        raise ValueError(f"{folder / VOCAB_FILE} is not a list of terms")
    if term_ids.ndim != 1 or offsets.ndim != 1 or len(offsets) == 0:
        raise ValueError(f"{folder} holds term ids of shape {term_ids.shape}, offsets {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != len(term_ids) or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{folder / OFFSETS_FILE} does not delimit {len(term_ids)} term ids")
    if len(term_ids) and not 0 <= int(term_ids.min()) <= int(term_ids.max()) < len(vocab):
        raise ValueError(f"{folder / TERM_IDS_FILE} holds term ids outside the {len(vocab)}-term vocabulary")
    words = [vocab[i] for i in term_ids.tolist()]
    bounds = offsets.tolist()
    return [words[start:end] for start, end in itertools.pairwise(bounds)]


class RankBM25Retriever:
    """BM25 through rank_bm25. Construct with :meth:`load` (after :meth:`build`)."""

    backend = "rank_bm25"

    def __init__(self, model: Any, doc_ids: Sequence[str], ranks: np.ndarray, tokenizer: Tokenizer) -> None:
        self._model = model
        self._doc_ids = doc_ids
        self._ranks = ranks
        self.tokenizer = tokenizer
        self.n_docs: int = model.corpus_size

    @staticmethod
    def build(
        corpus: Any,
        folder: Path,
        *,
        tokenizer: Tokenizer,
        k1: float,
        b: float,
        progress: bool = False,
        threads: int = 1,
    ) -> dict[str, int]:
        """Save the tokenized corpus into ``folder`` (rank_bm25 rebuilds its counts at load)."""
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        offsets = [0]
        for terms in tokenize_corpus(corpus.passages(), tokenizer, progress=progress, total=len(corpus)):
            term_ids.extend(vocab.setdefault(term, len(vocab)) for term in terms)
            offsets.append(len(term_ids))
        if not term_ids:
            raise ValueError("cannot index a corpus with no searchable terms (empty or all stopwords)")
        # ASCII escapes keep any odd term (a lone surrogate included) writable and exact.
        (folder / VOCAB_FILE).write_text(json.dumps(list(vocab)), encoding="ascii")
        np.save(folder / TERM_IDS_FILE, np.asarray(term_ids, dtype=np.int32))
        np.save(folder / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
        save_doc_rank(folder, corpus.doc_ids)
        return {"n_docs": len(corpus), "n_tokens": len(term_ids), "vocab_size": len(vocab)}

    @classmethod
    def load(
        cls,
        folder: Path,
        corpus: Any,
        *,
        tokenizer: Tokenizer,
        k1: float,
        b: float,
        threads: int = 1,
    ) -> RankBM25Retriever:
        """Load the token cache built in ``folder`` for ``corpus``."""
        terms = load_corpus_terms(folder)
        if len(terms) != len(corpus):
            raise ValueError(f"index at {folder} holds {len(terms)} docs, corpus {len(corpus)}")
        model = make_lucene_bm25(terms, k1, b)
        return cls(model, corpus.doc_ids, load_doc_rank(folder, len(corpus)), tokenizer)

    def scores(self, query: str) -> np.ndarray:
        """Every passage's score for ``query`` (float64, corpus order): for checking other backends."""
        return self._model.get_scores(self.tokenizer(check_query(query))[:MAX_QUERY_TERMS])

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` passages for ``query``, best first, ties broken by doc id."""
        k = check_k(k)
        terms = self.tokenizer(check_query(query))[:MAX_QUERY_TERMS]
        if k == 0 or not terms:
            return []
        return top_by_full_scores(self._model.get_scores(terms), k, self._ranks, self._doc_ids)

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for each query."""
        check_k(k)
        return [self.search(query, k) for query in queries]
