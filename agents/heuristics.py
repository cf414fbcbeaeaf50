"""Reading the factbook's text for the bm25 heuristic: questions, ``field: value`` clauses, answers.

``agents.scripted.BM25HeuristicPolicy`` plans its searches with ``split_bridge`` and
``split_comparison`` and answers with ``extract_answer`` (the value of the clause that shares the
most words with the question); prose corpora go through ``agents.extract`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from searchenv.observations import parse_question

WORD_RE = re.compile(r"\w+", re.UNICODE)
CLAUSE_RE = re.compile(r"(?<=[;.])\s+|\n+|\s+\|\s+")
_PAREN_RE = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_TRAILING_NUMBER_RE = re.compile(r"\s+-?[\d,.]+\s*(m|km|ft)?\s*$")
QUESTION_WORDS = frozenset(
    (
        "what which who whom whose where when how is are was were the a an of in on to for by and or "
        "does do did country countries used its it this that with has have"
    ).split()
)


def question_of(observation: str) -> str:
    """The question of a reset prompt; for any other observation, its last line."""
    question = parse_question(observation)
    return question.strip() if question is not None else observation.strip().splitlines()[-1]


def content_words(text: str) -> list[str]:
    """Lowercase words minus question words, in order, without repeats.

    >>> content_words("What is the capital of France?")
    ['capital', 'france']
    """
    seen: dict[str, None] = {}
    for word in WORD_RE.findall(text.lower()):
        if word not in QUESTION_WORDS:
            seen.setdefault(word, None)
    return list(seen)


def clean_value(value: str) -> str:
    """Strip the debris field values carry: parentheticals, units, exchange-rate tails.

    >>> clean_value("euros (EUR) per US dollar -")
    'euros'
    >>> clean_value("Mont Blanc 4,810 m")
    'Mont Blanc'
    >>> clean_value("47,735,685 (2025 est.)")
    '47,735,685'
    """
    value = _PAREN_RE.sub(" ", value)
    value = re.split(r"\s+per\s+US dollar|\s+-\s*$|;", value)[0]
    without_number = _TRAILING_NUMBER_RE.sub("", value.strip())
    if re.search(r"[^\W\d_]", without_number):
        value = without_number
    return re.sub(r"\s+", " ", value).strip(" ,.-:)(")


def subject_of(title: str) -> str:
    """The entity a passage is about: its title before the section name.

    >>> subject_of("France — Government")
    'France'
    """
    return title.split(" — ")[0].strip()


def first_number(text: str) -> float | None:
    """The first number in a text, thousands separators allowed.

    >>> first_number("Mont Blanc 4,810 m")
    4810.0
    """
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    return float(match.group(0).replace(",", "")) if match else None


def extract_answer(
    question: str, texts: Sequence[tuple[str, str]], *, raw: bool = False
) -> tuple[str, float]:
    """The value of the clause whose label best matches the question, with a match score.

    ``texts`` are (title, text) pairs. A clause is ``label: value``; the label is what precedes
    its last colon. Passages whose title names an entity of the question are preferred; the
    score counts question words in the label (twice) and in the whole clause. With ``raw`` the
    value comes back uncleaned (for numbers).

    >>> texts = [("France — Government", "Capital: name: Paris; x: y")]
    >>> extract_answer("What is the capital of France?", texts)
    ('Paris', 3.0)
    """
    question_words = set(content_words(question))
    title_scores = [len(question_words & set(content_words(subject_of(title)))) for title, _ in texts]
    best_title = max(title_scores, default=0)
    wants_one_item = re.search(r"\b(an?)\s+(official language|national symbol)", question.lower()) is not None
    best, best_score = "", 0.0
    for (_, text), title_score in zip(texts, title_scores):
        if title_score < best_title:
            continue
        for clause in CLAUSE_RE.split(text):
            label, colon, value = clause.rpartition(":")
            if not colon or not value.strip():
                continue
            label_words = set(WORD_RE.findall(label.lower()))
            clause_words = set(WORD_RE.findall(clause.lower()))
            score = 2.0 * len(question_words & label_words) + len(question_words & clause_words)
            answer = value.strip() if raw else clean_value(value)
            if wants_one_item and not raw:
                answer = answer.split(",")[0].strip()
            if score > best_score and answer:
                best, best_score = answer, score
    return best, best_score


_BRIDGE_RE = re.compile(
    r"the country (whose .+?|that gained independence on .+?)( gain independence\?| have\?|\?)$"
)
CONDITION_VALUE_RE = re.compile(r"(?: is | on )(.+)$")
_COMPARE_RE = re.compile(r"^Which has the larger (.+?), (.+?) or (.+?)\?$")
_COMPARE_ELEVATION_RE = re.compile(r"^Whose highest point is higher, (.+?) or (.+?)\?$")


def split_bridge(question: str) -> tuple[str, str] | None:
    """(condition, outer question with ``{}`` for the entity) for a bridge question.

    >>> split_bridge('What is the capital of the country whose national anthem is "Kassaman"?')
    ('whose national anthem is "Kassaman"', 'What is the capital of {}?')
    """
    match = _BRIDGE_RE.search(question)
    if match is None:
        return None
    outer = question[: match.start()] + "{}" + match.group(2)
    return match.group(1), outer


def split_comparison(question: str) -> tuple[str, tuple[str, str]] | None:
    """(attribute, (option a, option b)) for a comparison question.

    >>> split_comparison("Which has the larger total area, Cabo Verde or Djibouti?")
    ('total area', ('Cabo Verde', 'Djibouti'))
    """
    match = _COMPARE_RE.match(question)
    if match:
        return match.group(1), (match.group(2), match.group(3))
    match = _COMPARE_ELEVATION_RE.match(question)
    if match:
        return "highest point elevation", (match.group(1), match.group(2))
    return None
