"""Exact top-candidate selection by block-max MaxScore over bm25s's impact matrix (numba).

bm25s scores a query by adding every posting of every query term into a dense array of all
passages, then selects the top k: its cost grows with the corpus. This walks the postings
document at a time instead (Turtle and Flood's MaxScore, with Ding and Suel's block maxima as
a second bound) and never scores a passage that cannot enter the top ``fetch``:

1. Order the query's terms by their largest impact. The *non-essential* terms are the longest
   prefix whose maxima add up to no more than the current ``fetch``-th best score (the
   threshold): a passage that holds only those cannot enter. Only the *essential* terms' postings
   are walked; as the threshold rises, frequent (low-impact) terms become non-essential.
2. For each passage an essential term holds, add the essential impacts, then bound what the
   non-essential terms could add by the maxima of the blocks holding that passage; only if the
   bound beats the threshold are they looked up (binary search inside one block).
3. A passage's score is added up in float32 in the query's term order, exactly as bm25s's loop
   adds it, so scores are bit for bit bm25s's; the bounds are float64 with a relative slack
   (``SLACK_PER_TERM``) that covers float32 rounding, so pruning never drops a passage that belongs.

A passage is admitted only when its score is strictly above the threshold, so when scores tie
at the ``fetch``-th place the caller sees a full candidate list whose last score equals the
k-th and asks again with a larger ``fetch`` (``ranking.boundary_is_open``).

Cost: every posting of the essential terms, plus a block-bounded lookup per candidate; the
number of passages in the corpus only enters through the terms' document frequencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from searchenv.retrieval.block_max import BLOCK, BlockMax

try:
    from numba import njit, prange
except ImportError as error:  # a core dependency, but say what to do anyway
    raise ImportError(
        "the bm25s_pruned backend needs numba: pip install -e . (or pip install numba)"
    ) from error

# Relative margin per query term under the threshold before a bound prunes: a float32 sum of m
# terms is within (m - 1) * 2**-24 of the exact sum, the float64 bounds within far less.
SLACK_PER_TERM = 2.5e-7


def skip_window(
    doc: int,
    terms: np.ndarray,
    order: np.ndarray,
    essential_from: int,
    start: np.ndarray,
    end: np.ndarray,
    cursor: np.ndarray,
    indices: np.ndarray,
    block_ptr: np.ndarray,
    block_max: np.ndarray,
    block_last: np.ndarray,
    term_max: np.ndarray,
    threshold: float,
) -> tuple[int, bool]:
    """Skip the essential terms' postings up to the end of their shortest current block, if none can enter.

    The window runs from ``doc`` to the first block end among the essential terms' current
    blocks, so each essential term has all its postings of the window in one block. The bound
    adds, in float32 and in query order like the score itself, each term's most: its block's
    maximum if its next posting falls in the window, else nothing; a non-essential term's
    maximum. Float32 rounding is monotonic, so a bound at or under the threshold is exact proof
    that no passage of the window can enter (ties included). Returns ``(window_end, skipped)``.
    """
    m = terms.shape[0]
    window_end = np.int64(2**62)
    for r in range(essential_from, m):
        p = order[r]
        if cursor[p] < end[p]:
            last = block_last[block_ptr[terms[p]] + (cursor[p] - start[p]) // BLOCK]
            if last < window_end:
                window_end = last
    essential = np.zeros(m, dtype=np.bool_)
    for r in range(essential_from, m):
        essential[order[r]] = True
    bound = np.float32(0.0)
    for p in range(m):
        if not essential[p]:
            bound += term_max[terms[p]]
        elif cursor[p] < end[p] and indices[cursor[p]] <= window_end:
            bound += block_max[block_ptr[terms[p]] + (cursor[p] - start[p]) // BLOCK]
    if bound > threshold:
        return int(window_end), False
    for r in range(essential_from, m):
        p = order[r]
        lo = cursor[p]
        if lo < end[p] and indices[lo] <= window_end:
            block_start = start[p] + (lo - start[p]) // BLOCK * BLOCK
            hi = min(block_start + BLOCK, end[p])
            while lo < hi:  # first posting past the window (it is in this block or the next)
                mid = (lo + hi) // 2
                if indices[mid] <= window_end:
                    lo = mid + 1
                else:
                    hi = mid
            cursor[p] = lo
    return int(window_end), True


_skip_window = njit(nogil=True, cache=True)(skip_window)


def topk_one(
    terms: np.ndarray,
    fetch: int,
    n_docs: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    block_ptr: np.ndarray,
    block_max: np.ndarray,
    block_last: np.ndarray,
    term_max: np.ndarray,
    out_docs: np.ndarray,
    out_scores: np.ndarray,
) -> int:
    """Fill ``out_docs``/``out_scores`` with the top ``fetch`` passages (unordered); return how many.

    ``terms`` are the query's term ids in query order (repeats allowed: each counts, as in bm25s).
    """
    m = terms.shape[0]
    if m == 0 or fetch == 0:
        return 0
    start = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    cursor = np.empty(m, dtype=np.int64)
    block = np.empty(m, dtype=np.int64)
    block_end = np.empty(m, dtype=np.int64)
    upper = np.empty(m, dtype=np.float64)
    for p in range(m):
        t = terms[p]
        start[p] = indptr[t]
        end[p] = indptr[t + 1]
        cursor[p] = start[p]
        block[p] = block_ptr[t]
        block_end[p] = block_ptr[t + 1]
        upper[p] = term_max[t]
    order = np.argsort(upper, kind="mergesort")
    prefix = np.empty(m, dtype=np.float64)  # prefix[r]: sum of the r + 1 smallest maxima
    total = 0.0
    for r in range(m):
        total += upper[order[r]]
        prefix[r] = total
    keep = 1.0 - (m + 2) * SLACK_PER_TERM
    contrib = np.zeros(m, dtype=np.float32)
    block_bound = np.zeros(m, dtype=np.float64)
    size = 0
    lowest = 0  # index of the smallest score held, once the heap is full
    threshold = 0.0  # a score must beat this to enter; `bar` is the pruning bar below it
    bar = 0.0
    essential_from = 0

    doc = n_docs
    for p in range(m):
        if cursor[p] < end[p] and indices[cursor[p]] < doc:
            doc = indices[cursor[p]]
    checked_until = -1
    while doc < n_docs:
        if size == fetch and doc > checked_until:
            window_end, skipped = _skip_window(
                doc, terms, order, essential_from, start, end, cursor, indices,
                block_ptr, block_max, block_last, term_max, threshold,
            )  # fmt: skip
            if not skipped:
                checked_until = window_end
            else:
                doc = n_docs
                for r in range(essential_from, m):
                    p = order[r]
                    if cursor[p] < end[p] and indices[cursor[p]] < doc:
                        doc = indices[cursor[p]]
                continue
        partial = 0.0
        next_doc = n_docs
        for r in range(essential_from, m):
            p = order[r]
            c = cursor[p]
            if c < end[p]:
                if indices[c] == doc:
                    contrib[p] = data[c]
                    partial += data[c]
                    c += 1
                    cursor[p] = c
                if c < end[p] and indices[c] < next_doc:
                    next_doc = indices[c]
        if essential_from > 0 and partial + prefix[essential_from - 1] > bar:
            # Second bound: the maxima of the blocks that may hold `doc` in the non-essential terms.
            bound = 0.0
            for r in range(essential_from):
                p = order[r]
                b = block[p]
                while b < block_end[p] and block_last[b] < doc:
                    b += 1
                block[p] = b
                block_bound[r] = block_max[b] if b < block_end[p] else 0.0
                bound += block_bound[r]
            if partial + bound > bar:
                for r in range(essential_from - 1, -1, -1):
                    if partial + bound <= bar:
                        break
                    bound -= block_bound[r]
                    if block_bound[r] == 0.0:
                        continue
                    p = order[r]
                    lo = start[p] + (block[p] - block_ptr[terms[p]]) * BLOCK
                    hi = min(lo + BLOCK, end[p])
                    while lo < hi:  # first posting >= doc in this block
                        mid = (lo + hi) // 2
                        if indices[mid] < doc:
                            lo = mid + 1
                        else:
                            hi = mid
                    if lo < end[p] and indices[lo] == doc:
                        contrib[p] = data[lo]
                        partial += data[lo]
        if partial > bar:
            score = np.float32(0.0)
            for p in range(m):  # query order, float32: bm25s's own sum
                score += contrib[p]
            if score > threshold:
                if size < fetch:
                    out_docs[size] = doc
                    out_scores[size] = score
                    size += 1
                else:
                    out_docs[lowest] = doc
                    out_scores[lowest] = score
                if size == fetch:
                    lowest = 0
                    for i in range(1, fetch):
                        if out_scores[i] < out_scores[lowest]:
                            lowest = i
                    threshold = out_scores[lowest]
                    bar = threshold * keep
                    while essential_from < m and prefix[essential_from] <= bar:
                        essential_from += 1
        for p in range(m):
            contrib[p] = 0.0
        if essential_from == m:
            break
        doc = next_doc
    return size


def topk_batch(
    flat_terms: np.ndarray,
    pointers: np.ndarray,
    fetch: int,
    n_docs: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    block_ptr: np.ndarray,
    block_max: np.ndarray,
    block_last: np.ndarray,
    term_max: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`topk_one` for each query ``flat_terms[pointers[i]:pointers[i + 1]]``: docs, scores, counts."""
    n = pointers.shape[0] - 1
    docs = np.zeros((n, fetch), dtype=np.int64)
    scores = np.zeros((n, fetch), dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    for i in prange(n):  # a plain range in the serial compilation
        counts[i] = _topk_one_jit(
            flat_terms[pointers[i] : pointers[i + 1]],
            fetch,
            n_docs,
            indptr,
            indices,
            data,
            block_ptr,
            block_max,
            block_last,
            term_max,
            docs[i],
            scores[i],
        )
    return docs, scores, counts


# Compiled on first call, machine code cached on disk next to this file (or numba's user cache).
_topk_one_jit = njit(nogil=True, cache=True)(topk_one)
_batch_serial = njit(nogil=True, cache=True)(topk_batch)
_batch_parallel = njit(parallel=True, nogil=True, cache=True)(topk_batch)


def search_terms(
    queries: list[np.ndarray],
    fetch: int,
    n_docs: int,
    skip: BlockMax,
    matrix: tuple[np.ndarray, np.ndarray, np.ndarray],
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``fetch`` candidates of each query (arrays of term ids), unordered: ``(docs, scores, counts)``.

    ``matrix`` is bm25s's ``(indptr, indices, data)``; ``threads > 1`` spreads a batch over
    numba's threads (the caller sets how many with ``numba.set_num_threads``).
    """
    pointers = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(q) for q in queries], out=pointers[1:])
    flat = np.concatenate(queries).astype(np.int64) if queries else np.zeros(0, dtype=np.int64)
    indptr, indices, data = matrix
    kernel: Any = _batch_parallel if threads > 1 and len(queries) > 1 else _batch_serial
    return kernel(
        flat, pointers, fetch, n_docs, indptr, indices, data,
        skip.block_ptr, skip.block_max, skip.block_last, skip.term_max,
    )  # fmt: skip
