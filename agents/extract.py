r"""Answers read out of prose passages: the bm25 baseline beyond the factbook's ``field: value`` text.

Two question forms that any corpus can ask, recognized from the question alone:

- a **blank** (three or more underscores): 'Fill in the blank: "... the ____ as a belligerent
  ..."'. The answer is what stands in the blank's place in the passage that holds the rest of
  the text: :func:`fill_blank` aligns the words on either side of the blank with the passage.
- a **quoted passage** of at least ten words: 'Which president said this: "..."', 'In which
  year ...: "..."'. The answer is read from the passage holding the quote: a year for
  *which year* / *when*, the passage's subject (its title before " — ") for *who* / *which
  person*, a number for *how many*, else the first name in the title or the quote's sentence.

The quoted text (with the blank left out) is also the best search query: it is the passage's
own words. :func:`question_form` returns None for every other question, the factbook's among
them (a test checks all of them), so the factbook heuristics are untouched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_BLANK = re.compile(r"_{3,}")
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]")
_WORD = re.compile(r"\w+")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_NAME = re.compile(r"[A-Z][\w'.-]*(?:\s+(?:(?:of|the|de|van|von)\s+)*[A-Z][\w'.-]*)*")
_ASKS = (
    ("year", re.compile(r"\b(?:which|what) year\b|\bwhen\b", re.IGNORECASE)),
    (
        "person",
        re.compile(r"^\W*who\b|\b(?:which|what) (?:president|person|man|woman|author|leader)\b", re.I),
    ),
    ("number", re.compile(r"\bhow (?:many|much)\b", re.IGNORECASE)),
)
MIN_QUOTE_WORDS = 10  # longer than any quoted name in the factbook (anthems: 8 words)
MAX_QUERY_CHARS = 400  # actions hold at most 500 characters
_CONTEXT_CHARS = (48, 24, 12)  # how much text beside the blank must match, tried in turn


@dataclass(frozen=True)
class QuestionForm:
    """A question that quotes a passage: ``cloze`` (with a blank) or ``quote``, and what it asks for."""

    kind: str
    passage: str  # the quoted text (the whole question for an unquoted blank)
    asks: str  # "blank", "year", "person", "number" or "thing"


def question_form(question: str) -> QuestionForm | None:
    """The form of a question that quotes a passage, or None for any other question.

    >>> question_form('Fill in the blank: "We signed a treaty with ____ in the spring of last year."').asks
    'blank'
    >>> quote = "We shall never forget the sacrifices made by all of our brave soldiers."
    >>> question_form(f'In which year did a president say this: "{quote}"').asks
    'year'
    >>> question_form("What is the capital of France?") is None
    True
    """
    quoted = max(_QUOTED.findall(question), key=len, default="")
    if _BLANK.search(question):
        passage = quoted if _BLANK.search(quoted) else question
        return QuestionForm("cloze", passage, "blank")
    if len(quoted.split()) < MIN_QUOTE_WORDS:
        return None
    outside = question.replace(quoted, " ")
    asks = next((name for name, pattern in _ASKS if pattern.search(outside)), "thing")
    return QuestionForm("quote", quoted, asks)


def search_query(form: QuestionForm) -> str:
    """The passage's words without the blank, cut to fit in an action.

    >>> search_query(QuestionForm("cloze", "the ____ as a belligerent", "blank"))
    'the as a belligerent'
    """
    query = " ".join(_BLANK.sub(" ", form.passage).split())
    return query[:MAX_QUERY_CHARS].rsplit(" ", 1)[0] if len(query) > MAX_QUERY_CHARS else query


def overlap(a: str, b: str) -> int:
    """Distinct lowercase words two texts share."""
    return len(set(_WORD.findall(a.lower())) & set(_WORD.findall(b.lower())))


def best_text(passage: str, texts: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The (title, text) sharing most words with ``passage`` (the latest on ties: a full read)."""
    if not texts:
        return None
    scores = [overlap(passage, f"{title} {text}") for title, text in texts]
    best = max(scores)
    return texts[len(scores) - 1 - scores[::-1].index(best)]


def _flexible(text: str) -> str:
    """A regex matching ``text`` with any run of whitespace for each of its runs."""
    return r"\s+".join(re.escape(part) for part in text.split())


def fill_blank(passage: str, text: str) -> str:
    """What ``text`` holds where ``passage`` has its blank; "" when the two do not align.

    >>> fill_blank("recognized the ____ as a belligerent", "recognized the insurgents as a belligerent power")
    'insurgents'
    >>> fill_blank("relations reaching to the distant realms of ____.", "the distant realms of Asia. Next")
    'Asia'
    """
    match = _BLANK.search(passage)
    if match is None:
        return ""
    left, right = passage[: match.start()], passage[match.end() :]
    for width in _CONTEXT_CHARS:
        before = _flexible(left[-width:].split(" ", 1)[-1] if len(left) > width else left)
        after = _flexible(right[:width].rsplit(" ", 1)[0] if len(right) > width else right)
        if not before.strip() and not after.strip():
            return ""
        # Without text on one side, the blank runs to a punctuation mark or from a word start.
        tail = r"\s*" + after if after.strip() else r"(?=[.;:,!?]|\s*$)"
        head = before + r"\s*" if before.strip() else r"(?:^|(?<=\s))"
        found = re.search(head + r"(.{1,120}?)" + tail, text)
        if found and found.group(1).strip():
            return found.group(1).strip(" ,;:")
    return ""


def _first(pattern: re.Pattern[str], texts: Sequence[str], question: str) -> str:
    for text in texts:
        for match in pattern.finditer(text):
            value = match.group(0).strip(" ,.")
            if value and value.lower() not in question.lower():
                return value
    return ""


def answer_from(form: QuestionForm, question: str, texts: Sequence[tuple[str, str]]) -> str:
    """The answer a quoting question asks for, read from the text that holds its passage.

    >>> texts = [("Abraham Lincoln — Annual Message, 1862", "We cannot escape history.")]
    >>> form = question_form('Who said: "We cannot escape history, and we will be remembered despite it."')
    >>> answer_from(form, "Who wrote ...?", texts)
    'Abraham Lincoln'
    """
    found = best_text(form.passage, texts)
    if found is None:
        return ""
    title, text = found
    if form.asks == "blank":
        return fill_blank(form.passage, text) or fill_blank(form.passage, f"{title}\n{text}")
    subject = title.split(" — ")[0].strip()
    if form.asks == "year":
        return _first(_YEAR, [title, text], question)
    if form.asks == "number":
        return _first(_NUMBER, [text], form.passage + question)
    if form.asks == "person" and subject and subject.lower() not in question.lower():
        return subject
    return _first(_NAME, [title, text], question)


# --- Entity prose: "It is governed as a presidential republic. About 47,735,685 people live there." ---

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_CLAUSE = re.compile(r"(?:^|[;.\n|]\s*)[A-Z][\w ()'/-]{0,60}:\s+\S")  # a label, a colon, a space
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"\b(?:\d{{1,2}} (?:{_MONTHS}) \d{{4}}|(?:{_MONTHS}) \d{{1,2}}, \d{{4}})\b")
_CODE = re.compile(r"(?<![\w.])(?:[A-Z][A-Z0-9]{1,5}|[A-Z][a-z]|\.[a-z]{2,3})(?![\w])")
_SPAN_STOP = frozenset(
    "is are was were be been being the a an of called named known as to at in on by its it there "
    "their his her which that who whom".split()
)
_SPAN_END = frozenset("and but which that while where who whom its it".split())
_TYPE_RULES = (
    ("date", re.compile(r"\bwhen\b|\b(?:what|which) (?:year|date|day)\b|\bin what year\b", re.I)),
    (
        "number",
        re.compile(
            r"\bhow (?:many|much|high|large|big|long|far|tall|old|deep|wide)\b|"
            r"\b(?:population|number|percentage|elevation|height|area|latitude|longitude)\b",
            re.I,
        ),
    ),
    ("code", re.compile(r"\b(?:code|symbol|abbreviation|acronym|abbreviated|initials)\b", re.I)),
    (
        "person",
        re.compile(
            r"^\W*(?:who|whom|whose)\b|\b(?:which|what) (?:person|man|woman|president|king|queen|"
            r"leader|author|scientist|writer|artist)\b",
            re.I,
        ),
    ),
    (
        "name",
        re.compile(
            r"^\W*where\b|\b(?:which|what) (?:city|town|country|place|state|region|island|river|mountain|"
            r"language|company|team|organization|party|ship|book|film|song)\b",
            re.I,
        ),
    ),
)
_FILLER = frozenset(
    "what which who whom whose where when how is are was were the a an of in on to for by and or does do did "
    "this that with has have it its kind many much about".split()
)


def is_prose(text: str) -> bool:
    """True for running text, False for ``label: value`` records (the factbook's passages).

    >>> is_prose("It is governed as a republic. Its capital is Paris.")
    True
    >>> is_prose("Capital: name: Paris; geographic coordinates: 48 52 N")
    False
    """
    return _CLAUSE.search(text) is None


def answer_type(question: str) -> str:
    """What kind of span a question asks for: date, number, code, person, name or thing.

    >>> [answer_type(q) for q in ("How many people live in Chad?", "Who wrote it?", "What is its capital?")]
    ['number', 'person', 'thing']
    """
    return next((kind for kind, pattern in _TYPE_RULES if pattern.search(question)), "thing")


def _stem(word: str) -> str:
    return word.lower()[:5]


def _keys(text: str, drop: str = "") -> set[str]:
    dropped = {w.lower() for w in _WORD.findall(drop)}
    return {
        _stem(w)
        for w in _WORD.findall(text)
        if w.lower() not in _FILLER and w.lower() not in dropped and not w.isdigit()
    }


def _candidates(kind: str, sentence: str) -> list[re.Match[str]]:
    if kind == "date":
        return list(_DATE.finditer(sentence)) or list(_YEAR.finditer(sentence))
    if kind == "number":
        return list(_NUMBER.finditer(sentence))
    if kind == "code":
        return list(_CODE.finditer(sentence))
    if kind in ("person", "name"):
        return [m for m in _NAME.finditer(sentence) if m.group(0) not in _SENTENCE_STARTS]
    return []


_SENTENCE_STARTS = frozenset(
    "It Its The A An In At On This That There These Those He She They People About".split()
)


def _span_near(sentence: str, keys: set[str]) -> str:
    """The words after the last question word the sentence holds, else the name before the first."""
    tokens = sentence.split()
    hits = [i for i, token in enumerate(tokens) if _keys(token) & keys]
    if not hits:
        return ""
    after: list[str] = []
    for token in tokens[hits[-1] + 1 :]:
        word = token.strip(".,;:!?\"'()")
        if not after and word.lower() in _SPAN_STOP:
            continue
        if after and word.lower() in _SPAN_END:
            break
        after.append(word)
        if len(after) == 6 or token[-1:] in ".,;:!?)":
            break
    if after:
        return " ".join(after).strip()
    before: list[str] = []
    for token in reversed(tokens[: hits[0]]):
        word = token.strip(".,;:!?\"'()")
        if not before and word.lower() in _SPAN_STOP:
            continue
        if before and (token[-1:] in ",;:" or word.lower() in _SPAN_STOP | _SPAN_END or len(before) == 6):
            break
        before.insert(0, word)
    names = [m.group(0) for m in _NAME.finditer(" ".join(before))]
    return names[-1] if names else " ".join(before)


def prose_answer(question: str, title: str, text: str) -> str:
    """A short span of ``text`` that answers ``question``: its type's candidate nearest the question's words.

    The sentence sharing most of the question's words (besides the entity's, which the title
    names) is read; a date, number, code or name is taken from it when the question's wh-word
    and nouns ask for one, else the words beside the question's last word in that sentence.

    >>> text = "It is governed as a presidential republic. About 47,735,685 people live there."
    >>> prose_answer("How many people live in Algeria?", "Algeria", text)
    '47,735,685'
    >>> prose_answer("What kind of government does Algeria have?", "Algeria", text)
    'presidential republic'
    """
    keys = _keys(question, drop=title)
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if not sentences:
        return ""
    asked = question.lower()
    kind = answer_type(question)
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(_keys(sentences[i]) & keys), i))
    for index in ranked:
        sentence = sentences[index]
        found = [m for m in _candidates(kind, sentence) if m.group(0).strip(" ,.").lower() not in asked]
        if found:
            hits = [m.start() for m in re.finditer(r"\S+", sentence) if _keys(m.group(0)) & keys]
            anchor = hits[-1] if hits else 0
            return min(found, key=lambda m: abs(m.start() - anchor)).group(0).strip(" ,.")
    for index in ranked:
        span = _span_near(sentences[index], keys)
        if span and span.lower() not in asked:
            return span
    names = [m.group(0) for s in sentences for m in _NAME.finditer(s) if m.group(0).lower() not in asked]
    return names[0] if names else ""


__all__ = [
    "QuestionForm",
    "answer_from",
    "answer_type",
    "best_text",
    "fill_blank",
    "is_prose",
    "prose_answer",
    "question_form",
    "search_query",
]
