"""The retrieval contract every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Hit:
    """One ranked result: a corpus doc id and its backend score (higher is better)."""

    doc_id: str
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Ranks corpus passages for a query. Ties are broken by doc id, ascending."""

    backend: str

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` passages for ``query``, best first, ties broken by doc id."""
        ...

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for each query, in order."""
        ...
