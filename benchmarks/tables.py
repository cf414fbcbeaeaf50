"""Markdown cells and tables shared by every benchmark report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Mapping[str, Any] | float | None, digits: int = 3, signed: bool = False) -> str:
    """A figure as table text: an interval ``{mean, low, high}``, a number, or ``n.a.``.

    >>> cell({"mean": 0.5, "low": 0.25, "high": 0.75, "n": 4})
    '0.500 [0.250, 0.750]'
    >>> cell(0.12345), cell(None), cell(3), cell(1234.5, 1), cell(-0.5, 2, signed=True)
    ('0.123', 'n.a.', '3', '1234.5', '-0.50')
    """
    spec = f"{'+' if signed else ''}.{digits}f"
    if value is None:
        return "n.a."
    if isinstance(value, Mapping):
        return f"{value['mean']:{spec}} [{value['low']:{spec}}, {value['high']:{spec}}]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:{spec}}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table.

    >>> table(["a", "b"], [["1", "2"]])
    ['| a | b |', '|---|---|', '| 1 | 2 |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
