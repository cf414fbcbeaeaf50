"""The one answer normalization of SearchQA, shared by task builders and rewards.

Tasks use it to dedupe gold answers and to check that a gold passage holds its value; rewards
use it to grade answers. Both sides must agree on what "the same answer" means, or a task could
accept an answer that the reward then marks wrong, so the normalization lives here, at the
bottom layer, and ``searchenv.rewards.normalize`` imports it.

:func:`normalize_answer` is SQuAD's answer normalization (lowercase, delete punctuation, drop
the English articles, collapse whitespace), made unicode-aware: case folding rather than
lower-casing (``"Straße"`` equals ``"STRASSE"``) and accent folding (``"Réunion"`` equals
``"Reunion"``).
"""

from __future__ import annotations

import re
import string
import unicodedata

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The generic combining diacritics (acute, grave, tilde, cedilla, ...) that Latin, Greek and
# Cyrillic text carries as accents. Script-specific marks (Devanagari vowel signs, Arabic
# harakat, Japanese dakuten) are letters of their words, not accents: stripping them would
# make different words equal, so they are kept.
_ACCENT_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x0300, 0x036F),  # Combining Diacritical Marks
    (0x1AB0, 0x1AFF),  # Combining Diacritical Marks Extended
    (0x1DC0, 0x1DFF),  # Combining Diacritical Marks Supplement
    (0x20D0, 0x20FF),  # Combining Diacritical Marks for Symbols
    (0xFE20, 0xFE2F),  # Combining Half Marks
)
_ACCENTS = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _ACCENT_BLOCKS) + "]")
# In ASCII, Unicode's punctuation and symbol categories (P*, S*) are exactly
# ``string.punctuation``; a translate table is an order of magnitude faster than a per-character
# category lookup, and passage texts are mostly ASCII.
_DROP_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def _is_punctuation_or_symbol(char: str) -> bool:
    # Categories P* and S* cover everything in string.punctuation (SQuAD's set, which includes
    # symbols such as $ % + < = > ^ | ~) plus their non-ASCII relatives.
    return unicodedata.category(char)[0] in "PS"


def fold_accents(text: str) -> str:
    """NFKD-decompose ``text`` and drop its accents; case and punctuation are kept.

    Task builders use it to add the unaccented spelling of an answer as a surface form of its
    own; ASCII text comes back unchanged.

    Args:
        text: Any text.

    Returns:
        The text without generic combining diacritics (ligatures and full-width forms
        decomposed to plain letters).

    >>> fold_accents("Bogotá, Côte d'Ivoire")
    "Bogota, Cote d'Ivoire"
    >>> fold_accents("Straße")
    'Straße'
    """
    if text.isascii():
        return text
    return _ACCENTS.sub("", unicodedata.normalize("NFKD", text))


def normalize_answer(text: str) -> str:
    """SQuAD-style answer normalization, unicode-aware.

    Steps: NFKD decomposition (so ligatures and full-width forms become plain letters), removal
    of accents (generic combining diacritics only), case folding, deletion of punctuation and
    symbols, removal of the English articles a/an/the, whitespace collapse. Punctuation is
    deleted like SQuAD does (``"U.S."`` -> ``"us"``, ``"1,000"`` -> ``"1000"``) so published
    EM/F1 numbers stay comparable; the price is that ``"Guinea-Bissau"`` and
    ``"Guinea Bissau"`` differ, which a task handles by listing both surface forms as gold.

    Args:
        text: An answer, a gold answer or a passage text.

    Returns:
        The normalized text: tokens separated by single spaces.

    Raises:
        TypeError: ``text`` is not a str.

    >>> normalize_answer("The  Réunion Island!")
    'reunion island'
    >>> normalize_answer("U.S.A.")
    'usa'
    >>> normalize_answer("Straße") == normalize_answer("STRASSE") == "strasse"
    True
    >>> normalize_answer("São Tomé and Príncipe") == normalize_answer("sao tome and principe")
    True
    >>> normalize_answer("an apple, a pear; the end")
    'apple pear end'
    >>> normalize_answer("68,512,806 (2025 est.)")
    '68512806 2025 est'
    >>> normalize_answer("")
    ''
    """
    folded = fold_accents(_require_str(text, "answer text"))
    if folded.isascii():
        kept = folded.translate(_DROP_ASCII_PUNCTUATION)
    else:
        kept = "".join(char for char in folded if not _is_punctuation_or_symbol(char))
    return " ".join(token for token in kept.casefold().split() if token not in ARTICLES)


def contains_answer(passage_text: str, value: str) -> bool:
    """Whether ``value`` occurs in ``passage_text`` as whole tokens, after normalization.

    Args:
        passage_text: The text searched in.
        value: The answer searched for; one that normalizes to nothing is never contained.

    Returns:
        True when the normalized value is a token run of the normalized text.

    >>> contains_answer("Capital: name: Paris; time", "paris")
    True
    >>> contains_answer("Parisian", "Paris")
    False
    >>> contains_answer("Hauptstraße 1", "HAUPTSTRASSE")
    True
    """
    needle = normalize_answer(value)
    return bool(needle) and f" {needle} " in f" {normalize_answer(passage_text)} "


__all__ = ["ARTICLES", "contains_answer", "fold_accents", "normalize_answer"]
