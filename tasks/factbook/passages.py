"""Stage 2 of the Factbook build: chunk each entry into passages of at most ``MAX_WORDS`` words.

Passages follow section order, one line per field, each line starting with the field name
("Capital: name: Paris; ..."), titled "France — Government", with ids like
``fr/government/003``. A section tail under ``MIN_WORDS`` words shares its passage with the next
section (the title then names both); that keeps the corpus near 7.8k passages instead of 9k
mostly-empty tails.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from tasks.factbook.source import Entry, Node
from tasks.records import Passage

MAX_WORDS = 150
MIN_WORDS = 60  # a section tail shorter than this is packed together with the next section


@dataclass(frozen=True)
class _Atom:
    """The smallest piece of a passage: one sub-field (or a sentence run of a long one)."""

    section: str
    field: str
    sub: str | None
    text: str
    glue: str  # how it joins the previous atom of the same field inside one passage


def _render_sub(key: str, value: Node, field: str) -> str:
    body = "; ".join(_render_sub(k, v, field) for k, v in value.items()) if isinstance(value, dict) else value
    if key == "note":
        return body if body.lower().startswith("note") else f"note: {body}"
    return body if key in (field, "text") else f"{key}: {body}"


_BOUNDARIES = (re.compile(r"(?<=[.;!?])\s+"), re.compile(r"(?<=[.;!?,])\s+"))  # sentence ends, then commas


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split at the last sentence end (else comma) that keeps the head within ``limit`` words.

    >>> _cut("One two. Three four five, six. Seven", 4)
    ('One two.', 'Three four five, six. Seven')
    >>> _cut("a, b c, d e f", 3)
    ('a, b c,', 'd e f')
    """
    if len(text.split()) <= limit:
        return text, ""
    for boundary in _BOUNDARIES:
        pieces = boundary.split(text)
        taken = words = 0
        for piece in pieces:
            if words + len(piece.split()) > limit:
                break
            words += len(piece.split())
            taken += 1
        if words >= limit // 2:
            break
    return " ".join(pieces[:taken]), " ".join(pieces[taken:])


def _section_atoms(section: str, fields: Mapping[str, Node]) -> list[_Atom]:
    atoms = []
    for field, node in fields.items():
        units = (
            [(None, node)]
            if isinstance(node, str)
            else [(k, _render_sub(k, v, field)) for k, v in node.items()]
        )
        for sub, text in units:
            glue = "; "
            while text:  # pre-split long sub-fields so that every atom fits in a passage
                head, text = _cut(text, int(MAX_WORDS * 0.8))
                if not head:  # one sentence longer than the limit: cut it by words
                    words = text.split()
                    head, text = (
                        " ".join(words[: int(MAX_WORDS * 0.8)]),
                        " ".join(words[int(MAX_WORDS * 0.8) :]),
                    )
                atoms.append(_Atom(section, field, sub, head, glue))
                glue = " "
    return atoms


def _pack(atoms: list[_Atom]) -> list[list[_Atom]]:
    """Greedy packing into groups of at most ``MAX_WORDS``; splits an atom to fill a passage's end."""
    groups: list[list[_Atom]] = [[]]
    words = 0
    for atom in atoms:
        current = groups[-1]
        same_field = bool(current) and (current[-1].section, current[-1].field) == (atom.section, atom.field)
        cost = len(atom.text.split()) + (0 if same_field else len(atom.field.split()) + 1)
        if current and atom.section != current[-1].section and words >= MIN_WORDS:
            groups.append([])
            words, cost = 0, len(atom.text.split()) + len(atom.field.split()) + 1
        elif current and words + cost > MAX_WORDS:
            head, tail = _cut(atom.text, MAX_WORDS - words - (cost - len(atom.text.split())))
            if head and tail and len(head.split()) >= 10:
                current.append(_Atom(atom.section, atom.field, atom.sub, head, atom.glue))
                atom = _Atom(atom.section, atom.field, atom.sub, tail, " ")
            groups.append([])
            words, cost = 0, len(atom.text.split()) + len(atom.field.split()) + 1
        groups[-1].append(atom)
        words += cost
    return [g for g in groups if g]


def _render(atoms: list[_Atom], started: set[tuple[str, str]]) -> str:
    lines: list[str] = []
    previous = None
    for atom in atoms:
        key = (atom.section, atom.field)
        if key != previous:
            lines.append(f"{atom.field}{' (continued)' if key in started else ''}: {atom.text}")
            started.add(key)
        else:
            lines[-1] += atom.glue + atom.text
        previous = key
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def entry_passages(entry: Entry) -> tuple[list[Passage], dict[tuple[str, str, str | None], list[str]]]:
    """Chunk one entry; also map (section, field, sub) -> doc ids holding any part of it.

    Passages follow section order; a short section tail shares a passage with the next section
    (the title then names both). Ids count per first section: ``fr/government/003``.
    """
    atoms = [atom for section, fields in entry.sections.items() for atom in _section_atoms(section, fields)]
    passages: list[Passage] = []
    where: dict[tuple[str, str, str | None], list[str]] = {}
    started: set[tuple[str, str]] = set()
    per_section: Counter[str] = Counter()
    for group in _pack(atoms):
        sections = list(dict.fromkeys(atom.section for atom in group))
        doc_id = f"{entry.code}/{_slug(sections[0])}/{per_section[sections[0]]:03d}"
        per_section[sections[0]] += 1
        passages.append(Passage(doc_id, f"{entry.name} — {', '.join(sections)}", _render(group, started)))
        for atom in group:
            for key in ((atom.section, atom.field, atom.sub), (atom.section, atom.field, None)):
                if doc_id not in where.setdefault(key, []):
                    where[key].append(doc_id)
    return passages, where


__all__ = ["MAX_WORDS", "MIN_WORDS", "entry_passages"]
