"""``backend="auto"``: the fastest measured backend for a corpus of this size, and why.

The choice comes from ``benchmarks/results/scale.md`` (synthetic corpora, every backend measured
in the same session on the same machine, top-10, one thread). Both candidates rank identically
(``bm25s_pruned`` returns bm25s's hits bit for bit), so the choice changes speed, never results.
pyserini is never picked: it ranked slower at every measured size and needs a Java runtime.
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
            "at this size (benchmarks/results/scale.md)"
        )
        return BackendChoice("bm25s", n_docs, reason)
    reason = (
        f"{n_docs:,} passages >= {PRUNED_FROM_PASSAGES:,}: block-max MaxScore over bm25s's index, "
        "fastest measured from here on, same hits as bm25s (benchmarks/results/scale.md)"
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
