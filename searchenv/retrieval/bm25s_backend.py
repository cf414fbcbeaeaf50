"""The default backend: bm25s (precomputed sparse BM25 matrix, mmap load, numba when present).

Scoring is bm25s ``method="lucene"``: idf ``log(1 + (N - n + 0.5) / (n + 0.5))`` and term weight
``tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with exact document lengths. Passages are tokenized
with our :class:`~searchenv.retrieval.tokenize.Tokenizer`, so bm25s's own tokenizer never runs,
and the index files are written by :mod:`searchenv.retrieval.bm25s_build`, which produces bm25s's
own files for a fraction of the memory of ``bm25s.BM25.index``.

Use :func:`searchenv.retrieval.load_retriever` rather than this module directly: it owns the
cache folder and the atomic build.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchenv.retrieval.base import Hit
from searchenv.retrieval.ranking import (
    MAX_QUERY_TERMS,
    boundary_is_open,
    check_k,
    check_query,
    fetch_size,
    load_doc_rank,
    rank_positions,
    save_doc_rank,
    top_by_full_scores,
)
from searchenv.retrieval.tokenize import Tokenizer, tokenize_corpus

# Bump when the files this module writes change meaning; part of the cache key.
FORMAT_VERSION = "bm25s-1"


def numba_available() -> bool:
    """Whether numba is installed (bm25s then compiles its scoring loops)."""
    return importlib.util.find_spec("numba") is not None


_numba_cache_enabled = False


def enable_numba_cache() -> None:
    """Let numba cache bm25s's compiled retrieval loops on disk.

    The cache goes next to bm25s, or to numba's user-wide cache folder when that is read-only.

    bm25s compiles them without ``cache=True``, so every process would pay ~8 s on its first
    query; with the cache, only the first process on a machine does. Re-wrapping bm25s's own
    Python function is a small reach into its internals, hence the guard: if the names ever
    change, we silently keep bm25s's uncached versions.
    """
    global _numba_cache_enabled
    if _numba_cache_enabled or not numba_available():
        return
    _numba_cache_enabled = True
    try:
        from bm25s.numba import retrieve_utils
        from numba import njit

        python_loop = retrieve_utils._retrieve_internal_jitted
        retrieve_utils._retrieve_internal_jitted_serial = njit(nogil=True, cache=True)(python_loop)
        retrieve_utils._retrieve_internal_jitted_parallel = njit(parallel=True, cache=True)(python_loop)
    except (ImportError, AttributeError):
        pass


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as error:  # a core dependency, but say what to do anyway
        raise ImportError("the bm25s backend needs bm25s: pip install -e .") from error
    return bm25s


class BM25sRetriever:
    """BM25 over a bm25s index folder. Construct with :meth:`load` (after :meth:`build`)."""

    backend = "bm25s"

    def __init__(
        self,
        model: Any,
        doc_ids: Sequence[str],
        ranks: np.ndarray,
        tokenizer: Tokenizer,
        threads: int = 1,
    ) -> None:
        self._model = model
        self._vocab: dict[str, int] = model.vocab_dict
        self._doc_ids = doc_ids
        self._ranks = ranks
        self.tokenizer = tokenizer
        self.threads = threads
        self.n_docs: int = int(model.scores["num_docs"])
        self.uses_numba: bool = model.backend == "numba"

    # ----------------------------------------------------------------- building and loading

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
        """Index ``corpus`` (a ``tasks.records.Corpus``) into the empty ``folder``; return counts.

        Writes the files bm25s's own ``index`` + ``save`` would, streaming
        (:mod:`searchenv.retrieval.bm25s_build`), so the corpus is never held tokenized.
        """
        from searchenv.retrieval.bm25s_build import write_lucene_index

        counts = write_lucene_index(
            tokenize_corpus(corpus.passages(), tokenizer, progress=progress, total=len(corpus)),
            folder,
            k1=k1,
            b=b,
        )
        if counts["n_docs"] != len(corpus):
            raise RuntimeError(f"indexed {counts['n_docs']} passages of a corpus of {len(corpus)}")
        save_doc_rank(folder, corpus.doc_ids)
        return counts

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
    ) -> BM25sRetriever:
        """Open a built index with its arrays memory-mapped, and warm numba up once."""
        bm25s = _import_bm25s()
        enable_numba_cache()
        model = bm25s.BM25.load(
            str(folder),
            mmap=True,
            load_corpus=False,
            backend="numba" if numba_available() else "numpy",
        )
        if (model.k1, model.b, model.method) != (k1, b, "lucene"):
            raise ValueError(f"index at {folder} has k1={model.k1} b={model.b} method={model.method}")
        if int(model.scores["num_docs"]) != len(corpus):
            raise ValueError(f"index at {folder} holds {model.scores['num_docs']} docs, corpus {len(corpus)}")
        retriever = cls(model, corpus.doc_ids, load_doc_rank(folder, len(corpus)), tokenizer, threads)
        retriever.warm_up()
        return retriever

    def warm_up(self) -> None:
        """Compile numba's retrieval loop now (about 8 s, or well under 1 s from numba's disk cache).

        Runs one real query on the real (memory-mapped) arrays, because numba compiles a
        separate version for each array type it sees.
        """
        if self.uses_numba and self._vocab:
            some_term = next(iter(self._vocab.values()))
            self._retrieve([[some_term]], fetch=1)
            if self.threads > 1:
                self._retrieve([[some_term]] * 2, fetch=1)

    # ------------------------------------------------------------------------------ search

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` passages for ``query``, best first, ties broken by doc id."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for each query, scored in one batched call."""
        k = check_k(k)
        results: list[list[Hit]] = [[] for _ in queries]
        term_ids = [self._term_ids(check_query(query)) for query in queries]
        live = [i for i, ids in enumerate(term_ids) if ids]
        if k == 0 or not live:
            return results
        fetch = fetch_size(k, self.n_docs)
        all_indices, all_scores = self._retrieve([term_ids[i] for i in live], fetch)
        for row, i in enumerate(live):
            indices, scores = all_indices[row], all_scores[row]
            if boundary_is_open(scores, k, fetch, self.n_docs):
                # The tie at the k-th place runs past the fetched candidates: rank exactly.
                results[i] = top_by_full_scores(self._full_scores(term_ids[i]), k, self._ranks, self._doc_ids)
            else:
                results[i] = rank_positions(indices, scores, k, self._ranks, self._doc_ids)
        return results

    def _term_ids(self, query: str) -> list[int]:
        vocab = self._vocab
        terms = self.tokenizer(query)[:MAX_QUERY_TERMS]
        return [vocab[t] for t in terms if t in vocab]

    def _retrieve(self, term_ids: list[list[int]], fetch: int) -> tuple[np.ndarray, np.ndarray]:
        documents, scores = self._model.retrieve(
            term_ids,
            k=fetch,
            sorted=True,
            show_progress=False,
            n_threads=self.threads if len(term_ids) > 1 else 1,
        )
        return np.asarray(documents), np.asarray(scores)

    def _full_scores(self, term_ids: list[int]) -> np.ndarray:
        """Every passage's score, summed in query-term order like bm25s's own loop (same floats)."""
        data = self._model.scores["data"]
        indices = self._model.scores["indices"]
        indptr = self._model.scores["indptr"]
        scores = np.zeros(self.n_docs, dtype=data.dtype)
        for term in term_ids:
            start, end = indptr[term], indptr[term + 1]
            scores[indices[start:end]] += data[start:end]  # one entry per doc within a column
        return scores
