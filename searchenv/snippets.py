"""Query-focused snippets: show the part of a passage that best matches the query."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SEGMENT_RE = re.compile(r"(?<=[.;])\s+|\n+")


@lru_cache(maxsize=65_536)
def _segments(text: str) -> tuple[tuple[int, frozenset[str]], ...]:
    """Start offsets of the passage's clauses, each with its lowercase word set."""
    segments = []
    start = 0
    for match in _SEGMENT_RE.finditer(text):
        segments.append((start, frozenset(_WORD_RE.findall(text[start : match.start()].lower()))))
        start = match.end()
    segments.append((start, frozenset(_WORD_RE.findall(text[start:].lower()))))
    return tuple(segments)


def query_words(query: str) -> frozenset[str]:
    """The lowercase words of a query, computed once per search and shared by its hits."""
    return frozenset(_WORD_RE.findall(query.lower()))


def best_snippet(text: str, words: frozenset[str], max_chars: int) -> str:
    """The ``max_chars`` window that starts at the clause sharing most words with the query.

    Short passages come back whole; a window that does not start at the beginning is marked
    with a leading ellipsis, one that is cut with a trailing one.

    >>> best_snippet("Paris is big.", query_words("anything"), 50)
    'Paris is big.'
    >>> best_snippet("Area: 643,801 sq km. Capital: name: Paris.", query_words("capital name"), 25)
    '… Capital: name: Paris.'
    """
    if len(text) <= max_chars:
        return text
    best_start, best_overlap = 0, 0
    for start, segment_words in _segments(text):
        overlap = len(words & segment_words)
        if overlap > best_overlap:
            best_start, best_overlap = start, overlap
    start = best_start
    window = text[start : start + max_chars].strip()
    prefix = "… " if start > 0 else ""
    suffix = " …" if start + max_chars < len(text) else ""
    return f"{prefix}{window}{suffix}"
