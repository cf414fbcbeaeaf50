"""Stage 4 of the Factbook build: generate questions, check their gold passages, split them.

Questions are single-hop ("What is the capital of France?"), bridge ("What currency is used in
the country whose capital is Paris?", only when the bridge value names one entity) and comparison
("Which has the larger population, France or Spain?"). Every gold passage is checked, by
construction, to contain the value it supports; :func:`factbook_evidence` exposes those
(doc id, value) pairs.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.factbook.fields import Fact, FieldPath, entry_facts
from tasks.factbook.passages import entry_passages
from tasks.factbook.source import Entry, load_entries
from tasks.records import SPLITS, Corpus, Passage, Question, Task
from tasks.text import contains_answer, normalize_answer

SEED = 2025
COMPARISONS_PER_KIND = 300
# World, European Union and the bundle of US Pacific islands are not single places to ask about.
NOT_QUESTIONED = frozenset({"xx", "ee", "um"})
SINGLE_TEMPLATES: dict[str, str] = {
    "capital": "What is the capital of {subject}?",
    "currency": "What currency is used in {subject}?",
    "highest_point": "What is the highest point in {subject}?",
    "lowest_point": "What is the lowest point in {subject}?",
    "independence": "On what date did {subject} gain independence?",
    "anthem": "What is the title of the national anthem of {subject}?",
    "internet_code": "What is the internet country code of {subject}?",
    "national_symbol": "What is a national symbol of {subject}?",
    "government_type": "What type of government does {subject} have?",
    "official_language": "What is an official language of {subject}?",
    "long_name": "What is the conventional long-form name of {subject}?",
    "population": "What is the total population of {subject}?",
    "area": "What is the total area of {subject}?",
}
# How a bridge value describes the one entity that holds it ("the country whose capital is Paris").
BRIDGE_DESCRIPTIONS: dict[str, str] = {
    "capital": "whose capital is {value}",
    "highest_point": "whose highest point is {value}",
    "lowest_point": "whose lowest point is {value}",
    "anthem": 'whose national anthem is "{value}"',
    "internet_code": "whose internet country code is {value}",
    "independence": "that gained independence on {value}",
    "national_symbol": "whose national symbols include {value}",
}
COMPARISON_TEMPLATES: dict[str, str] = {
    "population": "Which has the larger population, {a} or {b}?",
    "area": "Which has the larger total area, {a} or {b}?",
    "elevation": "Whose highest point is higher, {a} or {b}?",
}
Evidence = tuple[tuple[str, str], ...]  # ((doc_id, value read there), ...) in hop order


@dataclass(frozen=True)
class _Draft:
    qid: str
    question: str
    answers: tuple[str, ...]
    evidence: Evidence
    kind: str
    hops: int


@dataclass(frozen=True)
class FactbookBuild:
    """The task plus, for each qid, the (doc_id, value) pairs its gold passages were checked against."""

    task: Task
    evidence: Mapping[str, Evidence]


def split_of(qid: str) -> str:
    """Stable 80/10/10 split from sha256 of the qid (never Python's salted ``hash``).

    >>> split_of("capital/fr")
    'train'
    """
    bucket = int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < 80 else "dev" if bucket < 90 else "test"


class _Gold:
    """Finds, for a fact, the passage of its field whose text contains the value (normalized)."""

    def __init__(self, corpus: Corpus, where: Mapping[str, Mapping[FieldPath, list[str]]]) -> None:
        self.corpus, self.where = corpus, where
        self.normalized: dict[str, str] = {}  # doc_id -> " normalized text ", filled on demand

    def __call__(self, code: str, path: FieldPath, value: str) -> str | None:
        needle = f" {normalize_answer(value)} "
        for doc_id in self.where[code].get(path, ()):
            if doc_id not in self.normalized:
                self.normalized[doc_id] = f" {normalize_answer(self.corpus[doc_id].text)} "
            if needle.strip() and needle in self.normalized[doc_id]:
                return doc_id
        return None


def _bridge_values(own: Mapping[str, Fact], kind: str) -> tuple[str, ...]:
    """Values that may describe the entry in a bridge: any of its national symbols, else the canonical."""
    if kind not in own:
        return ()
    return own[kind].answers if kind == "national_symbol" else own[kind].answers[:1]


def _entity_drafts(
    entry: Entry, own: dict[str, Fact], gold: _Gold, unique: Mapping[str, set[str]], rng: np.random.Generator
) -> list[_Draft]:
    """Single-hop questions about one entry, then one bridge question per target field."""
    drafts, hop1 = [], {}
    for kind, template in SINGLE_TEMPLATES.items():
        if kind in own and (doc := gold(entry.code, own[kind].path, own[kind].value)):
            hop1[kind] = (doc, own[kind].value)
            drafts.append(
                _Draft(
                    f"{kind}/{entry.code}",
                    template.format(subject=entry.subject),
                    own[kind].answers,
                    (hop1[kind],),
                    kind,
                    1,
                )
            )
    bridges = []  # (kind, value, doc_id): values that name this entry and no other
    for kind in BRIDGE_DESCRIPTIONS:
        for value in _bridge_values(own, kind):
            if normalize_answer(value) in unique[kind] and (doc := gold(entry.code, own[kind].path, value)):
                bridges.append((kind, value, doc))
                break
    place = "country" if entry.sovereign else "territory"
    for target, template in SINGLE_TEMPLATES.items():
        options = [b for b in bridges if b[0] != target]
        if target == "long_name" or target not in hop1 or not options:
            continue
        kind, value, doc = options[int(rng.integers(len(options)))]
        shown = f"the {value}" if kind == "national_symbol" and value[:1].islower() else value
        question = template.format(subject=f"the {place} " + BRIDGE_DESCRIPTIONS[kind].format(value=shown))
        if not contains_answer(question, own[target].value):
            drafts.append(
                _Draft(
                    f"bridge/{target}/{kind}/{entry.code}",
                    question,
                    own[target].answers,
                    ((doc, value), hop1[target]),
                    f"bridge_{target}",
                    2,
                )
            )
    return drafts


def _comparison_drafts(
    pool: list[Entry], facts: Mapping[str, dict[str, Fact]], gold: _Gold, rng: np.random.Generator
) -> list[_Draft]:
    """Seeded random pairs per quantity; values at least 10% apart; names not nested ("Niger")."""
    drafts = []
    for kind, template in COMPARISON_TEMPLATES.items():
        holding = [(e, facts[e.code][kind]) for e in pool if kind in facts[e.code]]
        eligible = [
            (e, f, d)
            for e, f in holding
            if f.number and f.number > 0 and (d := gold(e.code, f.path, f.value))
        ]
        seen: set[tuple[str, ...]] = set()
        for _ in range(COMPARISONS_PER_KIND * 20):
            if len(seen) >= COMPARISONS_PER_KIND:
                break
            (a, fa, da), (b, fb, db) = (eligible[i] for i in rng.choice(len(eligible), size=2, replace=False))
            pair = tuple(sorted((a.code, b.code)))
            na, nb = normalize_answer(a.name), normalize_answer(b.name)
            if (
                pair in seen
                or max(fa.number, fb.number) < 1.1 * min(fa.number, fb.number)
                or na in nb
                or nb in na
            ):
                continue
            seen.add(pair)
            winner = a if fa.number > fb.number else b
            drafts.append(
                _Draft(
                    f"compare/{kind}/{a.code}-{b.code}",
                    template.format(a=a.subject, b=b.subject),
                    winner.names,
                    ((da, fa.value), (db, fb.value)),
                    f"compare_{kind}",
                    2,
                )
            )
    return drafts


def _build(progress: bool = False) -> FactbookBuild:
    entries = load_entries()
    passages: list[Passage] = []
    where: dict[str, dict[FieldPath, list[str]]] = {}
    iterator: Iterable[Entry] = entries
    if progress:
        from tqdm import tqdm

        iterator = tqdm(entries, desc="factbook passages", unit="entry")
    for entry in iterator:
        entry_docs, where[entry.code] = entry_passages(entry)
        passages += entry_docs
    corpus = Corpus(passages)
    gold = _Gold(corpus, where)
    facts = {entry.code: entry_facts(entry) for entry in entries}
    names = {normalize_answer(name) for entry in entries for name in entry.names}
    holders: dict[str, Counter[str]] = {kind: Counter() for kind in BRIDGE_DESCRIPTIONS}
    for own in facts.values():
        for kind in BRIDGE_DESCRIPTIONS:
            holders[kind].update(normalize_answer(v) for v in _bridge_values(own, kind))
    # Bridge values must name one entry, and must not contain a name ("Libya, Libya, Libya").
    unique = {
        kind: {v for v, n in counts.items() if n == 1 and not any(f" {x} " in f" {v} " for x in names)}
        for kind, counts in holders.items()
    }
    rng = np.random.default_rng(SEED)
    pool = [entry for entry in entries if entry.code not in NOT_QUESTIONED]
    drafts = [d for entry in pool for d in _entity_drafts(entry, facts[entry.code], gold, unique, rng)]
    drafts += _comparison_drafts(pool, facts, gold, rng)
    splits: dict[str, list[Question]] = {split: [] for split in SPLITS}
    evidence: dict[str, Evidence] = {}
    texts: set[str] = set()
    for draft in drafts:
        if draft.question in texts or draft.qid in evidence:
            continue
        texts.add(draft.question)
        supporting = tuple(dict.fromkeys(doc for doc, _ in draft.evidence))
        split = split_of(draft.qid)
        splits[split].append(
            Question(draft.qid, draft.question, draft.answers, supporting, draft.kind, draft.hops, split)
        )
        evidence[draft.qid] = draft.evidence
    task = Task("factbook", corpus, {split: tuple(questions) for split, questions in splits.items()})
    return FactbookBuild(task, evidence)


_CACHE: dict[str, FactbookBuild] = {}


def factbook_build(progress: bool = False) -> FactbookBuild:
    """The build, memoized in-process (1-2 s the first time on one core)."""
    if "build" not in _CACHE:
        _CACHE["build"] = _build(progress)
    return _CACHE["build"]


def factbook_task(progress: bool = False) -> Task:
    """The Factbook task: 7,813 passages and 5,864 questions (56% two-hop) in fixed 80/10/10 splits."""
    return factbook_build(progress).task


def factbook_evidence() -> Mapping[str, Evidence]:
    """Map qid -> ((doc_id, value read there), ...): bridge value then answer; both values of a comparison."""
    return factbook_build().evidence


def write_factbook(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``corpus.jsonl`` and ``{split}.jsonl`` (FlashRAG format, atomic) and return their paths."""
    from tasks.jsonl import write_flashrag

    return write_flashrag(factbook_task(), out_dir)


__all__ = [
    "BRIDGE_DESCRIPTIONS",
    "COMPARISONS_PER_KIND",
    "COMPARISON_TEMPLATES",
    "NOT_QUESTIONED",
    "SEED",
    "SINGLE_TEMPLATES",
    "Evidence",
    "FactbookBuild",
    "factbook_build",
    "factbook_evidence",
    "factbook_task",
    "split_of",
    "write_factbook",
]
