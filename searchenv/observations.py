"""The observation text: every string the agent reads is rendered here and parsed back here.

The env renders with these functions, scripted agents parse with them, and the tiny model's
tokenizer is trained on their output, so the format is written down exactly once. The shapes:

- the prompt (``PROMPT_TEMPLATE``), whose last line is ``Question: ...``;
- search results, ``<information>`` around one ``[rank] doc_id | title | snippet`` line per
  hit (a snippet may run over several lines), or around ``NO_HITS``;
- a read passage, ``<information>`` around ``[doc_id] title`` and the passage text;
- ``<error>why Turns left: n.</error>`` after an invalid action;
- ``ANSWER_RECEIVED`` after an answer.

Parsing is the inverse of rendering as long as titles and doc ids hold no ``" | "`` and no
newline, and no snippet line starts like the next hit's ``[rank] ``.

Every observation fits ``MAX_OBSERVATION_CHARS`` (the env's observation space; async vector
envs hold exactly that much per env in shared memory). When the content would not, its longest
fields are cut (``searchenv.truncation``), each ending with ``[truncated: N more characters]``,
and search results that cannot all fit end with ``[truncated: N more hits]``. Content that fits
is rendered exactly as it would be without a limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from searchenv.truncation import MIN_FIELD_CHARS, fit_fields

MAX_OBSERVATION_CHARS = 60_000

PROMPT_TEMPLATE = """Answer the question by searching a local index of {corpus} passages.
Each turn, reply with exactly one action:
<search>query</search> returns the top {top_k} passages with their doc ids.
<read>doc id</read> returns the full text of one passage.
<answer>short answer</answer> submits your final answer and ends the episode.
You may think inside <think>...</think> before the action. You have {max_turns} turns.
Question: {question}"""

# The short prompt (``prompt="short"``): for a model that has learned the action format by SFT,
# the instructions are mostly tokens to prefill every episode. It keeps the three tags and the
# turn budget, and the question stays the last line.
SHORT_PROMPT_TEMPLATE = (
    "Reply with one of <search>query</search>, <read>doc id</read>, <answer>answer</answer>. "
    "{max_turns} turns.\nQuestion: {question}"
)
PROMPT_TEMPLATES = {"full": PROMPT_TEMPLATE, "short": SHORT_PROMPT_TEMPLATE}

ANSWER_RECEIVED = "Answer received. The episode is over."
NO_HITS = "No passages matched this query. Try other words."

_OPEN, _CLOSE = "<information>\n", "\n</information>"
_ERROR_OPEN, _ERROR_CLOSE = "<error>", "</error>"
_QUESTION_RE = re.compile(r"^Question: (.*)\Z", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class HitLine:
    """One search result as the agent sees it. Unpacks like a ``(doc_id, title, snippet)`` triple."""

    doc_id: str
    title: str
    snippet: str

    def __iter__(self) -> Iterator[str]:
        return iter((self.doc_id, self.title, self.snippet))


@dataclass(frozen=True)
class PassageView:
    """A read passage as the agent sees it (the text possibly truncated)."""

    doc_id: str
    title: str
    text: str


def render_prompt(question: str, *, corpus: str, top_k: int, max_turns: int, style: str = "full") -> str:
    """The reset observation: instructions (``style`` "full" or "short"), then the question last.

    >>> prompt = render_prompt("What is the capital of France?", corpus="factbook", top_k=3, max_turns=8)
    >>> prompt.splitlines()[-1]
    'Question: What is the capital of France?'
    >>> parse_question(prompt)
    'What is the capital of France?'
    >>> print(render_prompt("Capital of Chad?", corpus="factbook", top_k=3, max_turns=4, style="short"))
    Reply with one of <search>query</search>, <read>doc id</read>, <answer>answer</answer>. 4 turns.
    Question: Capital of Chad?
    """
    if style not in PROMPT_TEMPLATES:
        raise ValueError(f"prompt style must be one of {sorted(PROMPT_TEMPLATES)}, not {style!r}")
    template = PROMPT_TEMPLATES[style]
    prompt = template.format(corpus=corpus, top_k=top_k, max_turns=max_turns, question=question)
    if len(prompt) <= MAX_OBSERVATION_CHARS:
        return prompt
    fixed = len(template.format(corpus="", top_k=top_k, max_turns=max_turns, question=""))
    corpus, question = _fit([corpus, question], MAX_OBSERVATION_CHARS - fixed)
    return template.format(corpus=corpus, top_k=top_k, max_turns=max_turns, question=question)


def render_hits(hits: Iterable[tuple[str, str, str]]) -> str:
    """Search results from ``(doc_id, title, snippet)`` triples (or ``HitLine`` records), ranked from 1.

    >>> observation = render_hits([("fr/gov/0", "France — Government", "Capital: Paris")])
    >>> print(observation)
    <information>
    [1] fr/gov/0 | France — Government | Capital: Paris
    </information>
    >>> parse_hits(observation)
    [HitLine(doc_id='fr/gov/0', title='France — Government', snippet='Capital: Paris')]
    >>> render_hits(parse_hits(observation)) == observation
    True
    >>> parse_hits(render_hits([]))
    []
    """
    hits = list(hits)
    body = "\n".join(
        [f"[{rank}] {doc_id} | {title} | {snippet}" for rank, (doc_id, title, snippet) in enumerate(hits, 1)]
    )
    if len(body) + len(_OPEN) + len(_CLOSE) > MAX_OBSERVATION_CHARS:
        body = _fitted_hits_body([tuple(hit) for hit in hits])
    return f"{_OPEN}{body or NO_HITS}{_CLOSE}"


def _fitted_hits_body(hits: list[tuple[str, ...]]) -> str:
    """The hit lines cut to fit: every field shares the budget; hits that cannot fit are dropped."""
    budget = MAX_OBSERVATION_CHARS - len(_OPEN) - len(_CLOSE)
    # Each field keeps room for a mark, so a very long result list shows its first hits only.
    shown = min(len(hits), budget // (3 * MIN_FIELD_CHARS + 16))
    while shown > 0:
        tail = f"\n[truncated: {len(hits) - shown} more hits]" if shown < len(hits) else ""
        frame = sum(len(f"[{rank}] ") + len(" |  | ") + 1 for rank in range(1, shown + 1)) - 1
        fields = _fit_or_none([field for hit in hits[:shown] for field in hit], budget - frame - len(tail))
        if fields is not None:
            lines = [
                f"[{i // 3 + 1}] {fields[i]} | {fields[i + 1]} | {fields[i + 2]}"
                for i in range(0, len(fields), 3)
            ]
            return "\n".join(lines) + tail
        shown -= 1
    return f"[truncated: {len(hits)} more hits]"  # not reached for any budget near the real one


def render_passage(doc_id: str, title: str, text: str, max_chars: int | None = MAX_OBSERVATION_CHARS) -> str:
    r"""A read observation: the header line, then the text; at most ``max_chars`` in all (None: no limit).

    A passage too long to fit is cut with a mark; a title too long to leave the text room is
    cut too (the doc id, at most an action argument long, stays whole).

    >>> observation = render_passage("fr/gov/0", "France — Government", "Capital: Paris\nArea: big")
    >>> print(observation)
    <information>
    [fr/gov/0] France — Government
    Capital: Paris
    Area: big
    </information>
    >>> parse_passage(observation)
    PassageView(doc_id='fr/gov/0', title='France — Government', text='Capital: Paris\nArea: big')
    """
    observation = f"{_OPEN}[{doc_id}] {title}\n{text}{_CLOSE}"
    if max_chars is None or len(observation) <= max_chars:
        return observation
    fixed = len(observation) - len(doc_id) - len(title) - len(text)
    doc_id, title, text = _fit([doc_id, title, text], max_chars - fixed)
    return f"{_OPEN}[{doc_id}] {title}\n{text}{_CLOSE}"


def render_error(message: str, turns_left: int | None = None) -> str:
    """An error observation; the env always says how many turns are left.

    >>> render_error("The <search> tag is empty.", turns_left=3)
    '<error>The <search> tag is empty. Turns left: 3.</error>'
    >>> is_error(render_error("No complete action tag found."))
    True
    """
    suffix = "" if turns_left is None else f" Turns left: {turns_left}."
    fixed = len(_ERROR_OPEN) + len(suffix) + len(_ERROR_CLOSE)
    if len(message) + fixed > MAX_OBSERVATION_CHARS:
        (message,) = _fit([message], MAX_OBSERVATION_CHARS - fixed)
    return f"{_ERROR_OPEN}{message}{suffix}{_ERROR_CLOSE}"


def _fit_or_none(fields: list[str], budget: int) -> list[str] | None:
    return fit_fields(fields, budget) if budget > 0 else None


def _fit(fields: list[str], budget: int) -> list[str]:
    fitted = _fit_or_none(fields, budget)
    if fitted is None:  # only a budget far below MAX_OBSERVATION_CHARS could get here
        raise ValueError(f"{len(fields)} fields cannot fit in {budget} characters")
    return fitted


def unknown_doc_message(doc_id: str) -> str:
    """The error for a read of a doc id that is not in the corpus (the id cut to 80 characters)."""
    return (
        f"Unknown doc id {doc_id[:80]!r}. Read takes a doc id exactly as shown in "
        "search results, e.g. the text after [1]."
    )


def parse_question(prompt: str) -> str | None:
    r"""The question of a reset prompt (everything after ``Question: ``), or None if there is none.

    >>> parse_question("Question: Which is larger,\nA or B?")
    'Which is larger,\nA or B?'
    >>> parse_question("<error>oops</error>") is None
    True
    """
    match = _QUESTION_RE.search(prompt)
    return match.group(1) if match else None


def parse_hits(observation: str) -> list[HitLine]:
    r"""The hits of a search observation, in rank order; ``[]`` for any other observation.

    A hit runs from its ``[rank] `` to the line that starts with the next rank, so snippets
    that span lines come back whole.

    >>> two = render_hits([("a/1", "A", "first\nsecond line"), ("b/2", "B", "x | y")])
    >>> [hit.snippet for hit in parse_hits(two)]
    ['first\nsecond line', 'x | y']
    >>> parse_hits(render_passage("a/1", "A", "text"))
    []
    """
    if not (observation.startswith(_OPEN + "[1] ") and observation.endswith(_CLOSE)):
        return []
    body = observation[len(_OPEN) : -len(_CLOSE)]
    hits: list[HitLine] = []
    rank, start = 1, 0
    while start >= 0:
        begin = start + len(f"[{rank}] ")
        rank += 1
        end = body.find(f"\n[{rank}] ", begin)
        doc_id, bar, rest = body[begin : end if end >= 0 else len(body)].partition(" | ")
        title, bar2, snippet = rest.partition(" | ")
        if not (bar and bar2):
            return []
        hits.append(HitLine(doc_id, title, snippet))
        start = end + 1 if end >= 0 else -1
    return hits


def parse_passage(observation: str) -> PassageView | None:
    """The passage of a read observation, or None for any other observation (search results too)."""
    if not (observation.startswith(_OPEN + "[") and observation.endswith(_CLOSE)):
        return None
    header, newline, text = observation[len(_OPEN) : -len(_CLOSE)].partition("\n")
    doc_id, bracket, title = header[1:].partition("] ")
    if not (newline and bracket and doc_id) or parse_hits(observation):
        return None
    return PassageView(doc_id, title, text)


def is_error(observation: str) -> bool:
    """Whether an observation reports an invalid action."""
    return observation.startswith(_ERROR_OPEN) and observation.endswith(_ERROR_CLOSE)
