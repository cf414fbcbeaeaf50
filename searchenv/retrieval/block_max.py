"""Block maxima of bm25s's impact matrix: the skip data that lets top-k selection prune.

bm25s stores one CSC column per term: the passages holding it (ascending) and each one's final
BM25 contribution (float32, the *impact*). This module cuts every column into blocks of
:data:`BLOCK` postings and records, per block, the largest impact and the last passage; per term,
the largest impact of its column. :mod:`searchenv.retrieval.maxscore` uses them as upper bounds:
a passage whose best possible score cannot beat the current k-th is never scored.

Files (next to bm25s's own, written after them, read back with ``mmap``):

- ``block_ptr.npy`` (int64, terms + 1): term ``t``'s blocks are ``block_ptr[t]:block_ptr[t + 1]``
- ``block_max.npy`` (float32, blocks): the largest impact in each block
- ``block_last.npy`` (int32, blocks): the last (largest) passage position in each block
- ``term_max.npy`` (float32, terms): the largest impact of each term

The writer streams the data and indices files one range of columns at a time, so its memory is
one range (``RANGE_POSTINGS`` postings, 8 bytes each) plus the block arrays (1/8 of a byte per
posting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searchenv.retrieval.bm25s_build import DATA_FILE, INDICES_FILE, INDPTR_FILE, column_blocks

BLOCK = 64
RANGE_POSTINGS = 1 << 24

BLOCK_PTR_FILE = "block_ptr.npy"
BLOCK_MAX_FILE = "block_max.npy"
BLOCK_LAST_FILE = "block_last.npy"
TERM_MAX_FILE = "term_max.npy"
BLOCK_FILES = (BLOCK_PTR_FILE, BLOCK_MAX_FILE, BLOCK_LAST_FILE, TERM_MAX_FILE)


@dataclass(frozen=True)
class BlockMax:
    """The skip data of one index (arrays memory-mapped when loaded)."""

    block_ptr: np.ndarray
    block_max: np.ndarray
    block_last: np.ndarray
    term_max: np.ndarray


def _read_range(path: Path, start: int, count: int) -> np.ndarray:
    """``count`` entries of a 1-D ``.npy`` file from ``start``, read (not mapped) into memory."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    header, dtype, shape = mapped.offset, mapped.dtype, mapped.shape
    del mapped
    if len(shape) != 1 or start + count > shape[0]:
        raise ValueError(f"{path} holds {shape} entries; wanted {start}:{start + count}")
    return np.fromfile(path, dtype=dtype, count=count, offset=header + start * dtype.itemsize)


def block_layout(indptr: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``block_ptr``: where each term's blocks start in the block arrays.

    >>> block_layout(np.array([0, 3, 4, 9]), block=2).tolist()
    [0, 2, 3, 6]
    """
    doc_freqs = np.diff(indptr)
    if doc_freqs.size and doc_freqs.min() < 1:
        raise ValueError("a term of the vocabulary has no postings: the index is not bm25s's")
    block_ptr = np.zeros(len(doc_freqs) + 1, dtype=np.int64)
    np.cumsum((doc_freqs + block - 1) // block, out=block_ptr[1:])
    return block_ptr


def compute_block_max(
    indptr: np.ndarray,
    read: object,
    block: int = BLOCK,
    range_postings: int = RANGE_POSTINGS,
) -> BlockMax:
    """Block and term maxima from a CSC impact matrix, read one range of columns at a time.

    Args:
        indptr: The column pointers (``n_terms + 1``).
        read: ``read(start, count) -> (data, indices)`` for postings ``start:start + count``.
        block: Postings per block.
        range_postings: Postings read at a time.

    Returns:
        The four arrays, in memory.

    >>> indptr = np.array([0, 3, 4])
    >>> data = np.float32([1, 5, 2, 7])
    >>> docs = np.int32([0, 4, 9, 2])
    >>> bm = compute_block_max(indptr, lambda s, c: (data[s:s + c], docs[s:s + c]), block=2)
    >>> bm.block_max.tolist(), bm.block_last.tolist(), bm.term_max.tolist()
    ([5.0, 2.0, 7.0], [4, 9, 2], [5.0, 7.0])
    """
    block_ptr = block_layout(indptr, block)
    n_blocks = int(block_ptr[-1])
    block_max = np.empty(n_blocks, dtype=np.float32)
    block_last = np.empty(n_blocks, dtype=np.int32)
    term_max = np.empty(len(indptr) - 1, dtype=np.float32)
    per_term = np.diff(block_ptr)
    for first, stop in column_blocks(indptr, range_postings):
        start, end = int(indptr[first]), int(indptr[stop])
        data, indices = read(start, end - start)  # type: ignore[operator]
        b0, b1 = int(block_ptr[first]), int(block_ptr[stop])
        counts = per_term[first:stop]
        # Each block starts `block` postings after the previous one of its term.
        starts = np.repeat(indptr[first:stop] - start, counts) + block * (
            np.arange(b1 - b0) - np.repeat(block_ptr[first:stop] - b0, counts)
        )
        ends = np.minimum(starts + block, np.repeat(indptr[first + 1 : stop + 1] - start, counts))
        block_max[b0:b1] = np.maximum.reduceat(np.asarray(data, dtype=np.float32), starts)
        block_last[b0:b1] = np.asarray(indices)[ends - 1]
        term_max[first:stop] = np.maximum.reduceat(block_max[b0:b1], block_ptr[first:stop] - b0)
    return BlockMax(block_ptr, block_max, block_last, term_max)


def write_block_max(folder: Path, block: int = BLOCK, range_postings: int = RANGE_POSTINGS) -> int:
    """Compute the skip data of the bm25s index in ``folder`` and save it there; the block count."""
    folder = Path(folder)
    indptr = np.load(folder / INDPTR_FILE, allow_pickle=False)

    def read(start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        return _read_range(folder / DATA_FILE, start, count), _read_range(folder / INDICES_FILE, start, count)

    result = compute_block_max(indptr, read, block, range_postings)
    for name, array in zip(
        BLOCK_FILES, (result.block_ptr, result.block_max, result.block_last, result.term_max)
    ):
        np.save(folder / name, array)
    return len(result.block_max)


def load_block_max(folder: Path, n_terms: int) -> BlockMax:
    """The skip data of ``folder``, memory-mapped and checked against each other and the vocabulary."""
    folder = Path(folder)
    arrays = [np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in BLOCK_FILES]
    result = BlockMax(*arrays)
    if result.block_ptr.shape != (n_terms + 1,) or result.term_max.shape != (n_terms,):
        raise ValueError(
            f"{folder / BLOCK_PTR_FILE} / {TERM_MAX_FILE} are sized for {len(result.term_max)} terms, "
            f"the vocabulary has {n_terms}: rebuild the index"
        )
    n_blocks = int(result.block_ptr[-1]) if n_terms else 0
    if result.block_max.shape != (n_blocks,) or result.block_last.shape != (n_blocks,):
        raise ValueError(
            f"{folder / BLOCK_MAX_FILE} / {BLOCK_LAST_FILE} do not hold the {n_blocks} blocks "
            f"{BLOCK_PTR_FILE} lays out: rebuild the index"
        )
    return result
