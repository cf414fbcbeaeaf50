"""``bm25s_pruned``: bm25s's own index, searched by block-max MaxScore so cost follows the postings.

The index folder holds exactly the files the ``bm25s`` backend writes (same streaming builder,
:mod:`searchenv.retrieval.bm25s_build`) plus the block maxima of
:mod:`searchenv.retrieval.block_max`. Search walks only the postings that can still change the
top k (:mod:`searchenv.retrieval.maxscore`) instead of scoring every passage into a dense array,
so its cost grows with the query terms' postings, not with the corpus.

Scores are bm25s's bit for bit (same float32 impacts, added in the same order) and ties are broken
by doc id like every backend, so its hits equal the ``bm25s`` backend's hit for hit
(``tests/test_retrieval_pruned.py``). Use :func:`searchenv.retrieval.load_retriever` with
``backend="bm25s_pruned"`` (or ``"auto"``) rather than this module directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchenv.retrieval.base import Hit
from searchenv.retrieval.block_max import BlockMax, block_layout, load_block_max, write_block_max
from searchenv.retrieval.bm25s_build import (
    DATA_FILE,
    INDICES_FILE,
    INDPTR_FILE,
    PARAMS_FILE,
    VOCAB_FILE,
    write_lucene_index,
)
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
FORMAT_VERSION = "bm25s-pruned-1"


class PrunedBM25Retriever:
    """bm25s's lucene BM25 with exact top-k pruning. Construct with :meth:`load` (after :meth:`build`)."""

    backend = "bm25s_pruned"

    def __init__(
        self,
        vocab: dict[str, int],
        matrix: tuple[np.ndarray, np.ndarray, np.ndarray],
        skip: BlockMax,
        doc_ids: Sequence[str],
        ranks: np.ndarray,
        tokenizer: Tokenizer,
        threads: int = 1,
    ) -> None:
        self._vocab = vocab
        self._matrix = matrix  # bm25s's CSC (indptr, indices, data), memory-mapped
        self._skip = skip
        self._doc_ids = doc_ids
        self._ranks = ranks
        self.tokenizer = tokenizer
        self.threads = threads
        self.n_docs = len(doc_ids)

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
        """Index ``corpus`` into the empty ``folder`` (bm25s's files, then the block maxima)."""
        counts = write_lucene_index(
            tokenize_corpus(corpus.passages(), tokenizer, progress=progress, total=len(corpus)),
            folder,
            k1=k1,
            b=b,
        )
        if counts["n_docs"] != len(corpus):
            raise RuntimeError(f"indexed {counts['n_docs']} passages of a corpus of {len(corpus)}")
        counts["n_blocks"] = write_block_max(folder)
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
    ) -> PrunedBM25Retriever:
        """Open a built index with its arrays memory-mapped, and compile (or load) the search loop."""
        folder = Path(folder)
        params = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
        if (params.get("k1"), params.get("b"), params.get("method")) != (k1, b, "lucene"):
            raise ValueError(
                f"{folder / PARAMS_FILE} has k1={params.get('k1')} b={params.get('b')} "
                f"method={params.get('method')}, expected k1={k1} b={b} method=lucene"
            )
        if params.get("num_docs") != len(corpus):
            raise ValueError(
                f"{folder / PARAMS_FILE} holds {params.get('num_docs')} docs, corpus {len(corpus)}"
            )
        vocab = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        indptr = np.load(folder / INDPTR_FILE, mmap_mode="r", allow_pickle=False)
        indices = np.load(folder / INDICES_FILE, mmap_mode="r", allow_pickle=False)
        data = np.load(folder / DATA_FILE, mmap_mode="r", allow_pickle=False)
        n_postings = int(indptr[-1]) if len(indptr) else -1
        if indptr.shape != (len(vocab) + 1,) or not indices.shape == data.shape == (n_postings,):
            raise ValueError(
                f"{folder}: {INDPTR_FILE}, {INDICES_FILE} and {DATA_FILE} disagree on their sizes"
            )
        skip = load_block_max(folder, len(vocab))
        if not np.array_equal(block_layout(np.asarray(indptr)), skip.block_ptr):
            raise ValueError(f"{folder}: block_ptr.npy does not match {INDPTR_FILE}: rebuild the index")
        ranks = load_doc_rank(folder, len(corpus))
        retriever = cls(vocab, (indptr, indices, data), skip, corpus.doc_ids, ranks, tokenizer, threads)
        retriever.warm_up()
        return retriever

    def warm_up(self) -> None:
        """Compile the search loop for these array types now (from numba's disk cache when warm)."""
        if self._vocab:
            some_term = np.array([next(iter(self._vocab.values()))], dtype=np.int64)
            self._candidates([some_term], 1)
            if self.threads > 1:
                self._candidates([some_term, some_term], 1)

    # ------------------------------------------------------------------------------ search

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` passages for ``query``, best first, ties broken by doc id."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for each query, selected in one compiled call (over threads when ``threads > 1``)."""
        k = check_k(k)
        results: list[list[Hit]] = [[] for _ in queries]
        term_ids = [self._term_ids(check_query(query)) for query in queries]
        live = [i for i, ids in enumerate(term_ids) if len(ids)]
        if k == 0 or not live:
            return results
        fetch = fetch_size(k, self.n_docs)
        docs, scores, counts = self._candidates([term_ids[i] for i in live], fetch)
        for row, i in enumerate(live):
            results[i] = self._ranked(
                term_ids[i], docs[row, : counts[row]], scores[row, : counts[row]], k, fetch
            )
        return results

    def _ranked(
        self, terms: np.ndarray, docs: np.ndarray, scores: np.ndarray, k: int, fetch: int
    ) -> list[Hit]:
        """Hits from one query's candidates; when a tie runs past them, fetch more until it does not."""
        while True:
            order = np.argsort(-scores, kind="stable")
            docs, scores = docs[order], scores[order]
            if not boundary_is_open(scores, k, fetch, self.n_docs):
                return rank_positions(docs, scores, k, self._ranks, self._doc_ids)
            fetch = min(self.n_docs, 4 * fetch)
            if fetch >= self.n_docs:
                return top_by_full_scores(self._full_scores(terms), k, self._ranks, self._doc_ids)
            more_docs, more_scores, counts = self._candidates([terms], fetch)
            docs, scores = more_docs[0, : counts[0]], more_scores[0, : counts[0]]

    def _term_ids(self, query: str) -> np.ndarray:
        vocab = self._vocab
        terms = self.tokenizer(query)[:MAX_QUERY_TERMS]
        return np.array([vocab[t] for t in terms if t in vocab], dtype=np.int64)

    def _candidates(
        self, term_ids: list[np.ndarray], fetch: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from searchenv.retrieval.maxscore import search_terms

        if self.threads > 1 and len(term_ids) > 1:
            import numba

            previous = numba.get_num_threads()
            numba.set_num_threads(min(self.threads, getattr(numba.config, "NUMBA_NUM_THREADS", 1)))
            try:
                return search_terms(term_ids, fetch, self.n_docs, self._skip, self._matrix, self.threads)
            finally:
                numba.set_num_threads(previous)
        return search_terms(term_ids, fetch, self.n_docs, self._skip, self._matrix)

    def _full_scores(self, term_ids: np.ndarray) -> np.ndarray:
        """Every passage's score, summed in query-term order like bm25s's own loop (same floats)."""
        indptr, indices, data = self._matrix
        scores = np.zeros(self.n_docs, dtype=data.dtype)
        for term in term_ids.tolist():
            start, end = indptr[term], indptr[term + 1]
            scores[indices[start:end]] += data[start:end]  # one entry per doc within a column
        return scores
