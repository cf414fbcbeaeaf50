"""``backend="auto"``: the fastest measured backend for a corpus of this size, and why.

The choice comes from ``benchmarks/results/scale.md`` (synthetic corpora, every backend measured
in the same session on the same machine, top-10, one thread). Both candidates rank identically
(``bm25s_pruned`` returns bm25s's hits bit for bit), so the choice changes speed, never results.
pyserini is never picked: bm25s was faster than it up to 3M passages, and the pruned path
skips the dense per-passage work that made bm25s lose to it at 10M (the 10M row of the pruned
path is still to run); it also needs a Java runtime.

Measured so far (AMD EPYC, 2 shared cores): at 100k passages the two bm25s paths are even (the
pruned selection 0.10 ms against 0.13 ms for bm25s's dense loop, median per query), so the
switch sits above that; the 1M-10M rows that place it exactly are listed as still to run in
``scale.md``. Move :data:`PRUNED_FROM_PASSAGES` when they land.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"

# Below this many passages the dense bm25s loop is as fast as pruning (a few hundred kB of scores
# per query fit in cache); above it, pruning wins and the gap grows with the corpus.
PRUNED_FROM_PASSAGES = 200_000


@dataclass(frozen=True)
class BackendChoice:
    """What ``auto`` resolved to for one corpus."""

    backend: str
    n_docs: int
    reason: str

    def __str__(self) -> str:
        return f"backend auto -> {self.backend} ({self.reason})"


def choose_backend(n_docs: int) -> BackendChoice:
    """The backend ``auto`` uses for a corpus of ``n_docs`` passages.

    >>> choose_backend(10_000).backend, choose_backend(5_000_000).backend
    ('bm25s', 'bm25s_pruned')
    """
    if n_docs < PRUNED_FROM_PASSAGES:
        reason = (
            f"{n_docs:,} passages < {PRUNED_FROM_PASSAGES:,}: the dense bm25s loop is as fast as pruning "
            "at this size, same hits (benchmarks/results/scale.md)"
        )
        return BackendChoice("bm25s", n_docs, reason)
    reason = (
        f"{n_docs:,} passages >= {PRUNED_FROM_PASSAGES:,}: block-max MaxScore over bm25s's index, "
        "whose cost follows the query's postings, not the corpus; same hits as bm25s "
        "(benchmarks/results/scale.md)"
    )
    return BackendChoice("bm25s_pruned", n_docs, reason)


def resolve_backend(backend: str, n_docs: int) -> tuple[str, BackendChoice | None]:
    """``backend`` itself, or for ``"auto"`` the chosen backend and the choice.

    >>> resolve_backend("pyserini", 10)
    ('pyserini', None)
    >>> resolve_backend("auto", 10)[0]
    'bm25s'
    """
    if backend != AUTO:
        return backend, None
    choice = choose_backend(n_docs)
    return choice.backend, choice
