"""Query-focused snippets: show the part of a passage that best matches the query.

A passage is cut into clauses (at ``.``/``;`` followed by space, and at newlines); the snippet
starts at the clause that shares the most words with the query, the earliest on a tie.

This runs for every hit of every search step, right after the retriever has evicted the
interpreter's working set from the CPU caches, so the scoring is a handful of C calls rather
than a Python loop over clauses. Each passage is indexed once into a dict from word to a packed
int that holds a 1 in the field of every clause with that word (a field per clause, one byte
wide unless a clause has 256 distinct words or more); summing the ints of the query's words
gives every clause's count at once, and the bytes of the sum are the counts. Words found in
every clause are left out: they add the same count to every clause and cannot change the winner.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from itertools import repeat

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SEGMENT_RE = re.compile(r"(?<=[.;])\s+|\n+")
_ZEROS = repeat(0)


@lru_cache(maxsize=65_536)  # keyed by text: valid across corpora, and a str caches its hash
def _clauses(text: str) -> tuple[tuple[int, ...], dict[str, int], int]:
    """Clause start offsets, word -> packed ones in the clauses holding it, and field bytes."""
    starts = [0]
    pieces = []
    for match in _SEGMENT_RE.finditer(text):
        pieces.append(text[starts[-1] : match.start()])
        starts.append(match.end())
    pieces.append(text[starts[-1] :])
    vocabularies = [set(_WORD_RE.findall(piece.lower())) for piece in pieces]
    # A count never exceeds its clause's vocabulary, so fields this wide never overflow.
    width = max(1, (max(map(len, vocabularies)).bit_length() + 7) // 8)
    fields: dict[str, int] = {}
    for index, vocabulary in enumerate(vocabularies):
        one = 1 << (8 * width * index)
        for word in vocabulary:
            fields[word] = fields.get(word, 0) + one
    everywhere = sum(1 << (8 * width * index) for index in range(len(pieces)))
    # Interned: passages share most of their vocabulary, which keeps the cache small.
    return tuple(starts), {sys.intern(w): f for w, f in fields.items() if f != everywhere}, width


def query_words(query: str) -> frozenset[str]:
    """The lowercase words of a query, computed once per search and shared by its hits."""
    return frozenset(_WORD_RE.findall(query.lower()))


def best_snippet(text: str, words: frozenset[str], max_chars: int) -> str:
    """The ``max_chars`` window that starts at the clause sharing most words with the query.

    Short passages come back whole; a window that does not start at the beginning is marked
    with a leading ellipsis, one that is cut with a trailing one. Ties go to the earlier clause.

    >>> best_snippet("Paris is big.", query_words("anything"), 50)
    'Paris is big.'
    >>> best_snippet("Area: 643,801 sq km. Capital: name: Paris.", query_words("capital name"), 25)
    '… Capital: name: Paris.'
    >>> best_snippet("Area: 643,801 sq km. Capital: name: Paris.", query_words("nothing"), 25)
    'Area: 643,801 sq km. Capi …'
    """
    if len(text) <= max_chars:
        return text
    starts, fields, width = _clauses(text)
    total = sum(map(fields.get, words, _ZEROS))
    if not total:
        start = 0
    else:
        if width == 1:
            counts: bytes | list[int] = total.to_bytes(len(starts), "little")  # the counts, in order
        else:  # a clause of 256+ distinct words: rare enough for a Python loop
            bits = 8 * width
            counts = [total >> bits * i & ((1 << bits) - 1) for i in range(len(starts))]
        start = starts[counts.index(max(counts))]
    end = start + max_chars
    window = text[start:end].strip()
    if start:
        window = f"… {window}"
    return f"{window} …" if end < len(text) else window
