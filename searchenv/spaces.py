"""A text space that holds any unicode string, for observations and raw-text actions."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import shared_memory

# Samples mix ordinary text with the characters that break naive parsers: tag brackets,
# slashes, quotes, a few multi-byte letters, an emoji and a right-to-left mark.
SAMPLE_CHARSET = string.ascii_letters + string.digits + " <>/_.-:'\"\n" + "éßЖ中😀\u200f"


class UnicodeText(Text):
    """Like ``gymnasium.spaces.Text``, but membership accepts every unicode character.

    Observations quote corpus passages, which hold arbitrary unicode; a fixed charset would
    make valid observations fall outside the space. ``sample()`` still draws from
    ``SAMPLE_CHARSET`` with ``self.np_random``.
    """

    def __init__(
        self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None
    ):
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        """Any str whose length is within bounds, whatever its characters."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )


# Async vector envs pass observations through shared memory. Gymnasium's Text handlers store
# charset indices, which cannot hold arbitrary unicode, and read the buffer once, at start-up,
# into a tuple of str that later steps never update. UnicodeText stores code points (-1 pads
# the tail) and reads through a live view that decodes on access; the vector env deep-copies
# it into a plain tuple before handing it out (its default ``copy=True``).
class SharedTextBatch(Sequence[str]):
    """A live, read-only view of ``n`` strings in a shared int32 buffer."""

    def __init__(self, memory: Any, n: int, max_length: int) -> None:
        self._rows = np.frombuffer(memory.get_obj(), dtype=np.int32).reshape((n, max_length))

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        row = self._rows[index]
        return "".join(map(chr, row[row >= 0].tolist()))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@shared_memory.create_shared_memory.register(UnicodeText)
def _create(space: UnicodeText, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing

    return (ctx or multiprocessing).Array(np.dtype(np.int32).char, n * space.max_length)


@shared_memory.read_from_shared_memory.register(UnicodeText)
def _read(space: UnicodeText, memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(memory, n, space.max_length)


@shared_memory.write_to_shared_memory.register(UnicodeText)
def _write(space: UnicodeText, index: int, value: str, memory: Any) -> None:
    size = space.max_length
    if len(value) > size:
        # The env cuts observations to fit; say so plainly if anything else ever overflows.
        raise ValueError(f"a {len(value)}-character text does not fit {space!r} (at most {size} characters)")
    destination = np.frombuffer(memory.get_obj(), dtype=np.int32)[index * size : (index + 1) * size]
    codes = np.fromiter(map(ord, value), dtype=np.int32, count=len(value))
    destination[: len(codes)] = codes
    destination[len(codes) :] = -1
