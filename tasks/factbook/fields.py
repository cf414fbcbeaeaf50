"""Stage 3 of the Factbook build: read clean, gradable facts out of an entry's fields.

Each kind of fact (``FIELDS``) names the field it is read from and an extractor that returns its
accepted answers (canonical first) and, for quantities, a number, or None when the value is not
clean enough to grade by exact match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tasks.factbook.source import Entry, name_like, paren_aliases, strip_parens, with_folded
from tasks.text import normalize_answer

FORBIDDEN_IN_ANSWERS = ("per US dollar", "<", "est.)")
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
        """The canonical answer."""
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
    bare = re.split(r";| note - ", strip_parens(text))[0].strip()
    tail = re.search(r"[\s,]+(?:less than |more than )?(-?\d[\d,]*(?:\.\d+)?)\s*(?:m\.?)?$", bare)
    if not tail:
        return None, bare, None
    name = bare[: tail.start()].strip(" ,")
    canonical = name.split(" on ")[0].strip()
    return (canonical if name_like(canonical) else None), name, _number(tail.group(1))


def _slash_aliases(name: str) -> list[str]:
    """Both halves of a slashed name: "Aoraki/Mount Cook" -> ["Aoraki", "Mount Cook"]; else nothing."""
    parts = [p.strip() for p in name.split("/")]
    return parts if len(parts) > 1 and all(name_like(p) for p in parts) else []


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
    bare = strip_parens(text)
    return ([bare, *paren_aliases(text)], None) if name_like(bare, 4) or bare == "Washington, D.C." else None


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
    name = match.group(1).strip()
    codes: list[str] = []
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
    items = [re.sub(r"^(a|an|the|and) ", "", strip_parens(s)) for s in re.split(r",\s*(?![^()]*\))", text)]
    return [s for s in items if 0 < len(s.split()) <= 4 and not re.search(r"\d|;|^each ", s)], None


def _government_type(text: str, entry: Entry) -> Extracted:
    bare = strip_parens(text)
    clean = ";" not in bare and len(bare.split()) <= 6 and not bare.startswith(("formerly", "in transition"))
    return ([bare], None) if clean else None


def _official_languages(text: str, entry: Entry) -> Extracted:
    pattern = r"([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)(?: [\d.]+%)? \(official(?:[,;][^)]*| nationwide)?\)"
    return re.findall(pattern, text), None


def _long_name(text: str, entry: Entry) -> Extracted:
    text = text.split("; note")[0]
    if text == "none" or ";" in text or normalize_answer(text) == normalize_answer(entry.name):
        return None
    return [strip_parens(text)], None


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
        answers = with_folded(extracted[0]) if extracted else ()
        if extracted and answers:
            bad = [a for a in answers if any(debris in a for debris in FORBIDDEN_IN_ANSWERS)]
            if bad:
                raise AssertionError(f"{entry.code} {kind}: unclean answers {bad}")
            facts[kind] = Fact(answers, path, extracted[1])
    return facts


__all__ = [
    "FIELDS",
    "FORBIDDEN_IN_ANSWERS",
    "Extracted",
    "Fact",
    "FieldPath",
    "clean_currency",
    "entry_facts",
]
