"""A streaming, memory-lean writer of the index folder bm25s saves for ``method="lucene"``.

``bm25s.BM25.index`` wants the whole tokenized corpus as Python lists of ints, then builds three
flat arrays of every (passage, term) pair and sorts them with an int64 argsort: its build peaked
2.1 GB above the corpus for 1M synthetic passages. This module writes the very same files (byte
for byte, checked by ``tests/test_bm25s_build.py``) in two passes:

1. Tokenize passage by passage; every ``CHUNK_DOCS`` passages, turn the chunk's token ids into
   (term id, count) pairs with a chunk-local ``np.unique``, stored in the narrowest integer types
   that hold them (counts are almost always ``uint8``): about 5 bytes per pair.
2. From the document frequencies lay out the CSC columns (``indptr``); then, one block of
   columns (``BLOCK_PAIRS`` entries) at a time, counting-sort every chunk's pairs of those columns
   into place and append the block to the ``.npy`` files. Chunks are visited in passage order, so
   each column lists its passages in ascending order, which is the order bm25s's sort produces.

The peak is the pair storage plus one block (plus the vocabulary dictionary): 0.6 GB above the
corpus for 1M synthetic passages, 1.3 GB for 3M (``benchmarks/results/scale.md``).

Scores follow bm25s 0.3.16 operation by operation: the idf is computed with ``math.log`` in
Python floats and stored as float32; the term weight ``tf / (k1 * ((1 - b) + b * dl / avgdl) + tf)``
is computed in float64 (bm25s's ``avgdl`` is a NumPy float64 scalar, which promotes its float32
term frequencies), multiplied by the float32 idf in float64 and rounded to float32 once.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

# File names bm25s.BM25.save uses and bm25s.BM25.load expects.
DATA_FILE = "data.csc.index.npy"
INDICES_FILE = "indices.csc.index.npy"
INDPTR_FILE = "indptr.csc.index.npy"
VOCAB_FILE = "vocab.index.json"
PARAMS_FILE = "params.index.json"
INDEX_FILES = (DATA_FILE, INDICES_FILE, INDPTR_FILE, VOCAB_FILE, PARAMS_FILE)

# Passages per pass-1 chunk: big enough that numpy's per-call overhead vanishes, small enough that
# the chunk's temporaries (~60 bytes per token, ~50 tokens per passage) stay near 50 MB.
CHUNK_DOCS = 1 << 14

# Output entries built in memory at a time (8 bytes each: a float32 score and an int32 doc id).
BLOCK_PAIRS = 1 << 25

_INT32_MAX = np.iinfo(np.int32).max


class _PairChunk:
    """The (term id, count) pairs of a run of consecutive passages, passage by passage."""

    __slots__ = ("counts", "pairs_per_doc", "terms")

    def __init__(self, terms: np.ndarray, counts: np.ndarray, pairs_per_doc: np.ndarray) -> None:
        self.terms = terms
        self.counts = counts
        self.pairs_per_doc = pairs_per_doc


def _narrowest_unsigned(values: np.ndarray) -> np.ndarray:
    """``values`` (non-negative) in the smallest unsigned dtype that holds its maximum."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.uint64)


def _chunk_pairs(token_ids: array, doc_lengths: array) -> _PairChunk:
    """Count each passage's distinct terms; pairs come out by passage, then by term id."""
    ids = np.frombuffer(token_ids, dtype=np.int32).astype(np.int64)
    lengths = np.frombuffer(doc_lengths, dtype=np.int32)
    local_doc = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    keys, counts = np.unique((local_doc << 32) | ids, return_counts=True)
    pairs_per_doc = np.bincount(keys >> 32, minlength=len(lengths))
    return _PairChunk(
        (keys & 0xFFFFFFFF).astype(np.int32), _narrowest_unsigned(counts), _narrowest_unsigned(pairs_per_doc)
    )


def collect_pairs(
    documents: Iterable[list[str]], chunk_docs: int = CHUNK_DOCS
) -> tuple[dict[str, int], list[_PairChunk], np.ndarray]:
    """Pass 1: the vocabulary (ids in first-seen order), the pair chunks and every passage's length.

    Args:
        documents: The terms of each passage, in corpus order (``tokenize_corpus``'s output).
        chunk_docs: Passages per chunk (tests use small values to cross chunk boundaries).

    Returns:
        ``(vocab, chunks, doc_lengths)``; ``doc_lengths`` is int64, one entry per passage.

    Raises:
        ValueError: When the vocabulary or a passage outgrows bm25s's int32 ids.
    """
    if chunk_docs < 1:
        raise ValueError(f"chunk_docs must be >= 1, got {chunk_docs}")
    vocab: dict[str, int] = {}
    chunks: list[_PairChunk] = []
    all_lengths = array("i")
    token_ids, doc_lengths = array("i"), array("i")
    for terms in documents:
        try:
            # ids in first-seen order, as the old build (and so the saved vocabulary) had them
            token_ids.extend([vocab.setdefault(term, len(vocab)) for term in terms])
            doc_lengths.append(len(terms))
        except OverflowError:
            raise ValueError(
                f"{len(vocab):,} terms or a passage of {len(terms):,} terms outgrow bm25s's int32 ids"
            ) from None
        if len(doc_lengths) == chunk_docs:
            chunks.append(_chunk_pairs(token_ids, doc_lengths))
            all_lengths.extend(doc_lengths)
            token_ids, doc_lengths = array("i"), array("i")
    if doc_lengths:
        chunks.append(_chunk_pairs(token_ids, doc_lengths))
        all_lengths.extend(doc_lengths)
    return vocab, chunks, np.frombuffer(all_lengths, dtype=np.int32).astype(np.int64)


def lucene_idf(doc_freqs: np.ndarray, n_docs: int) -> np.ndarray:
    """bm25s's lucene idf per term, float32, computed with ``math.log`` like bm25s.

    ``np.log`` may differ from libm in the last bit, so each distinct document frequency (a few
    thousand, even for millions of terms) goes through ``math.log`` once.

    >>> lucene_idf(np.array([1, 2, 1]), 4).tolist() == np.float32(
    ...     [math.log(1 + 3.5 / 1.5), math.log(1 + 2.5 / 2.5), math.log(1 + 3.5 / 1.5)]
    ... ).tolist()
    True
    """
    distinct, inverse = np.unique(doc_freqs, return_inverse=True)
    table = np.array(
        [math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) if df else 0.0 for df in distinct.tolist()],
        dtype=np.float32,
    )
    return table[inverse]


def _block_scatter_numpy(
    chunk: _PairChunk,
    first_doc: int,
    columns: tuple[int, int],
    scoring: tuple[np.ndarray, np.ndarray],
    out: Any,
) -> None:
    """Place one chunk's pairs of the block's columns: a chunk-local stable sort, then a scatter."""
    first, stop = columns
    idf, length_norm = scoring
    heads, data, indices = out
    docs = np.repeat(
        np.arange(first_doc, first_doc + len(chunk.pairs_per_doc), dtype=np.int32), chunk.pairs_per_doc
    )
    keep = (chunk.terms >= first) & (chunk.terms < stop)
    terms, docs = chunk.terms[keep], docs[keep]
    if terms.size == 0:
        return
    tf = chunk.counts[keep].astype(np.float64)
    scores = (idf[terms].astype(np.float64) * (tf / (length_norm[docs] + tf))).astype(np.float32)
    order = np.argsort(terms, kind="stable")
    columns_of = terms[order] - first
    run_starts = np.flatnonzero(np.r_[True, columns_of[1:] != columns_of[:-1]])
    run_lengths = np.diff(np.r_[run_starts, len(columns_of)])
    positions = heads[columns_of] + np.arange(len(columns_of)) - np.repeat(run_starts, run_lengths)
    data[positions] = scores[order]
    indices[positions] = docs[order]
    heads[columns_of[run_starts]] += run_lengths


def _block_scatter_loop(
    terms: np.ndarray,
    counts: np.ndarray,
    pairs_per_doc: np.ndarray,
    first_doc: int,
    first: int,
    stop: int,
    idf: np.ndarray,
    length_norm: np.ndarray,
    heads: np.ndarray,
    data: np.ndarray,
    indices: np.ndarray,
) -> None:
    """The same placement as one pass with no sort at all (compiled by numba).

    The float operations are those of the numpy version one by one; none is a multiply followed
    by an add, so no fused multiply-add can change a bit.
    """
    i = 0
    for local_doc in range(pairs_per_doc.shape[0]):
        doc = first_doc + local_doc
        for _ in range(pairs_per_doc[local_doc]):
            term = terms[i]
            if first <= term < stop:
                tf = np.float64(counts[i])
                position = heads[term - first]
                data[position] = np.float32(np.float64(idf[term]) * (tf / (length_norm[doc] + tf)))
                indices[position] = doc
                heads[term - first] = position + 1
            i += 1


@cache
def _compiled_loop() -> Any:
    from numba import njit

    return njit(nogil=True, cache=True)(_block_scatter_loop)


def _block_scatter(use_numba: bool | None) -> Any:
    """A function ``(chunk, first_doc, columns, scoring, out)``: numba's when installed or asked for."""
    if use_numba is False:
        return _block_scatter_numpy
    try:
        loop = _compiled_loop()
    except ImportError:
        if use_numba:
            raise
        return _block_scatter_numpy

    def scatter(chunk: _PairChunk, first_doc: int, columns: tuple[int, int], scoring: Any, out: Any) -> None:
        loop(chunk.terms, chunk.counts, chunk.pairs_per_doc, first_doc, *columns, *scoring, *out)

    return scatter


def column_blocks(indptr: np.ndarray, block_pairs: int) -> list[tuple[int, int]]:
    """Consecutive term ranges ``[first, stop)`` of at most ``block_pairs`` entries each.

    A single column larger than ``block_pairs`` gets a block of its own.

    >>> column_blocks(np.array([0, 2, 3, 7, 8]), 3)
    [(0, 2), (2, 3), (3, 4)]
    """
    blocks, first, n_terms = [], 0, len(indptr) - 1
    while first < n_terms:
        stop = int(np.searchsorted(indptr, indptr[first] + block_pairs, side="right")) - 1
        stop = min(max(stop, first + 1), n_terms)
        blocks.append((first, stop))
        first = stop
    return blocks


def _npy_writer(path: Path, dtype: type[np.generic], length: int) -> Any:
    """A binary file holding the ``.npy`` header ``np.save`` writes for a 1-D array, positioned after it."""
    file = open(path, "wb")  # noqa: SIM115 (closed by the caller, after the blocks are written)
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": (length,),
    }
    np.lib.format.write_array_header_1_0(file, header)
    return file


def write_lucene_index(
    documents: Iterable[list[str]],
    folder: Path,
    *,
    k1: float,
    b: float,
    use_numba: bool | None = None,
    chunk_docs: int = CHUNK_DOCS,
    block_pairs: int = BLOCK_PAIRS,
) -> dict[str, int]:
    """Index ``documents`` into ``folder`` exactly as bm25s's lucene ``index`` + ``save`` would.

    The result is what ``bm25s.BM25(k1=k1, b=b, method="lucene", backend="numpy")`` writes after
    ``index((token_ids, vocab), create_empty_token=False)`` and ``save(folder)``, with term ids in
    first-seen order; ``bm25s.BM25.load(folder, mmap=True)`` opens it.

    Args:
        documents: The terms of each passage, in corpus order.
        folder: An existing folder (the atomic build folder of ``load_retriever``).
        k1: BM25 term-frequency saturation (>= 0).
        b: BM25 length normalization (0 to 1).
        use_numba: Scatter with numba (True), with numpy (False), or numba when installed (None).
        chunk_docs: Passages per pass-1 chunk.
        block_pairs: Output entries (8 bytes each) built in memory at a time.

    Returns:
        ``{"n_docs", "n_tokens", "vocab_size"}``.

    Raises:
        ValueError: For bad parameters, or a corpus with no searchable terms.
        FileNotFoundError: When ``folder`` does not exist.
    """
    import bm25s
    from bm25s.utils import json_functions

    if not (k1 >= 0 and 0 <= b <= 1):
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1} b={b}")
    if block_pairs < 1:
        raise ValueError(f"block_pairs must be >= 1, got {block_pairs}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"index folder {folder} does not exist")
    scatter = _block_scatter(use_numba)

    vocab, chunks, doc_lengths = collect_pairs(documents, chunk_docs)
    n_docs, n_tokens = len(doc_lengths), int(doc_lengths.sum())
    if n_tokens == 0:
        raise ValueError("cannot index a corpus with no searchable terms (empty or all stopwords)")
    if n_docs > _INT32_MAX:
        raise ValueError(f"{n_docs:,} passages exceed bm25s's int32 document ids")

    doc_freqs = np.zeros(len(vocab), dtype=np.int64)
    for chunk in chunks:
        doc_freqs += np.bincount(chunk.terms, minlength=len(vocab))
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(doc_freqs, out=indptr[1:])
    idf = lucene_idf(doc_freqs, n_docs)
    del doc_freqs
    # bm25s: avgdl = np.array(lengths).mean(), a float64 scalar; then per passage
    # k1 * ((1 - b) + b * dl / avgdl), elementwise the same IEEE operations in the same order.
    avg_length = doc_lengths.mean()
    length_norm = k1 * ((1 - b) + b * doc_lengths.astype(np.float64) / avg_length)

    # The output is built one block of columns at a time, each written out before the next, so
    # only one block of it is ever in memory; each block rereads the (compact) pairs.
    n_pairs = int(indptr[-1])
    with (
        _npy_writer(folder / DATA_FILE, np.float32, n_pairs) as data_file,
        _npy_writer(folder / INDICES_FILE, np.int32, n_pairs) as indices_file,
    ):
        for first, stop in column_blocks(indptr, block_pairs):
            start, end = int(indptr[first]), int(indptr[stop])
            heads = indptr[first:stop] - start
            data = np.empty(end - start, dtype=np.float32)
            indices = np.empty(end - start, dtype=np.int32)
            first_doc = 0
            for chunk in chunks:
                scatter(chunk, first_doc, (first, stop), (idf, length_norm), (heads, data, indices))
                first_doc += len(chunk.pairs_per_doc)
            if not np.array_equal(heads, indptr[first + 1 : stop + 1] - start):
                raise RuntimeError("bm25s index build: columns were not filled exactly")  # a bug
            data.tofile(data_file)
            indices.tofile(indices_file)
    del chunks
    np.save(folder / INDPTR_FILE, indptr)

    with open(folder / VOCAB_FILE, "w", encoding="utf-8") as file:
        file.write(json_functions.dumps(vocab, ensure_ascii=False))
    params = dict(
        k1=k1,
        b=b,
        delta=0.5,  # bm25s's default; lucene ignores it
        method="lucene",
        idf_method="lucene",
        dtype="float32",
        int_dtype="int32",
        num_docs=n_docs,
        version=bm25s.__version__,
        backend="numpy",  # what the old build's model saved; load() overrides it
    )
    with open(folder / PARAMS_FILE, "w") as file:
        json.dump(params, file, indent=4)
    return {"n_docs": n_docs, "n_tokens": n_tokens, "vocab_size": len(vocab)}
