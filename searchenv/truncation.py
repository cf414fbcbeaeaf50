"""Cutting text to a character budget, always with a visible mark: nothing is cut silently.

An observation must fit the env's observation space (``MAX_OBSERVATION_CHARS``), whatever the
corpus holds: a 100,000-character passage, a title as long as a book, a doc id of 500
characters, a question pasted from a PDF. The renderers of ``searchenv.observations`` give each
variable field of an observation a share of the budget with :func:`fit_fields`; a field that is
cut ends with ``" [truncated: N more characters]"``. Text that fits is returned unchanged, so
observations of ordinary corpora are exactly what they were before budgets existed.
"""

from __future__ import annotations

from collections.abc import Sequence


def truncation_mark(n_cut: int) -> str:
    """What replaces the cut end of a field.

    Args:
        n_cut: How many characters were cut.

    Returns:
        The mark, with its leading space.

    >>> truncation_mark(1234)
    ' [truncated: 1234 more characters]'
    """
    return f" [truncated: {n_cut} more characters]"


# Every field is allowed at least this much, so a cut field always has room for its mark.
MIN_FIELD_CHARS = len(truncation_mark(10**12))


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and the mark, within ``limit``.

    Args:
        text: The field.
        limit: The most characters the result may have; at least ``MIN_FIELD_CHARS``.

    Returns:
        ``text``, or its first characters followed by :func:`truncation_mark`.

    Raises:
        ValueError: ``limit`` is too small to hold the mark.

    >>> clip("short", 50)
    'short'
    >>> clip("x" * 100, 50)
    'xxxxxxxxxxxxxxxxx [truncated: 83 more characters]'
    """
    if len(text) <= limit:
        return text
    if limit < MIN_FIELD_CHARS:
        raise ValueError(f"cannot cut text to {limit} characters: the mark alone needs {MIN_FIELD_CHARS}")
    # The mark for len(text) cut characters is at least as long as the real one.
    kept = text[: limit - len(truncation_mark(len(text)))].rstrip()
    return kept + truncation_mark(len(text) - len(kept))


def fair_cap(lengths: Sequence[int], budget: int) -> int | None:
    """The largest per-field cap whose capped lengths sum to at most ``budget`` (water-filling).

    Short fields keep all their characters; what they leave over goes to the long ones.

    Args:
        lengths: Each field's length.
        budget: The characters all fields may use together.

    Returns:
        The cap, or None when every field already fits in the budget as it is.

    >>> fair_cap([5, 100, 100], 105)
    50
    >>> fair_cap([5, 10], 100) is None
    True
    """
    if sum(lengths) <= budget:
        return None
    remaining, left = budget, len(lengths)
    for length in sorted(lengths):
        share = remaining // left
        if length > share:
            return share
        remaining -= length
        left -= 1
    return remaining  # not reached: the lengths sum past the budget


def fit_fields(fields: Sequence[str], budget: int) -> list[str] | None:
    """The fields, the longest cut (with marks) so that together they use at most ``budget``.

    Args:
        fields: The variable parts of one observation.
        budget: The characters they may use together.

    Returns:
        The fields, unchanged when they fit; None when they cannot fit even cut (each field
        needs ``MIN_FIELD_CHARS`` to show its mark).

    >>> fit_fields(["doc-1", "title", "a long passage " * 10], 80)
    ['doc-1', 'title', 'a long passage a long passage a long [truncated: 114 more characters]']
    >>> fit_fields(["a" * 100] * 10, 100) is None
    True
    """
    cap = fair_cap([len(field) for field in fields], budget)
    if cap is None:
        return list(fields)
    if cap < MIN_FIELD_CHARS:
        return None
    return [clip(field, cap) for field in fields]
