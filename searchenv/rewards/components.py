"""Reward components: pure functions of an :class:`~searchenv.episode.EpisodeRecord`.

Every component returns a float in [0, 1] and raises ``TypeError``/``ValueError`` on malformed
input (not a record, a question without usable gold answers, an answer turn before the last
turn, a bad judge) instead of quietly scoring 0.

The numbers follow ReZero (Dao & Le, 2025) where it defines them: ``retry`` is its
``reward_retry`` and ``diversity`` its ``reward_search_diversity``, computed from our structured
record instead of re-parsing chat messages. Where we deviate, the docstring says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from difflib import SequenceMatcher
from numbers import Real

from searchenv.episode import TOOLS, EpisodeRecord, Turn
from searchenv.rewards.normalize import (
    answer_tokens,
    cover_match,
    exact_match,
    normalize_query,
    operator_factor,
    query_key,
    token_f1,
)
from tasks.records import Question

CORRECTNESS_VARIANTS: tuple[str, ...] = ("em", "f1", "cover_em")

# (question text, submitted answer, gold answers) -> score in [0, 1].
Judge = Callable[[str, str, tuple[str, ...]], float]


def check_record(record: object) -> EpisodeRecord:
    """Validate the shape of a record; return it typed. Raises on anything malformed."""
    if not isinstance(record, EpisodeRecord):
        raise TypeError(f"expected an EpisodeRecord, got {type(record).__name__}")
    question = record.question
    if not isinstance(question, Question):
        raise TypeError(f"record.question must be a Question, got {type(question).__name__}")
    if not question.answers:
        raise ValueError(f"question {question.qid!r} has no gold answers")
    for gold in question.answers:
        if not isinstance(gold, str):
            raise TypeError(f"question {question.qid!r}: gold answer {gold!r} is not a str")
    if not isinstance(record.turns, tuple):
        raise TypeError(f"record.turns must be a tuple, got {type(record.turns).__name__}")
    last = len(record.turns) - 1
    for index, turn in enumerate(record.turns):
        if not isinstance(turn, Turn):
            raise TypeError(f"turn {index} is a {type(turn).__name__}, not a Turn")
        if turn.tool is not None and turn.tool not in TOOLS:
            raise ValueError(f"turn {index}: unknown tool {turn.tool!r}; expected one of {TOOLS}")
        tags = turn.search_tags
        if isinstance(tags, bool) or not isinstance(tags, int) or tags < 0:
            raise ValueError(f"turn {index}: search_tags must be an int >= 0, got {turn.search_tags!r}")
        if not isinstance(turn.argument, str):
            raise TypeError(f"turn {index}: argument must be a str, got {type(turn.argument).__name__}")
        if turn.valid and turn.tool == "answer" and index != last:
            # An answer ends the episode; an answer followed by more turns is a broken record.
            raise ValueError(f"turn {index} answers but is followed by {last - index} more turn(s)")
    return record


def _score_from_judge(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, Real):
        raise TypeError(f"judge must return a real number in [0, 1], got {type(value).__name__}")
    score = float(value)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"judge returned {score!r}, outside [0, 1]")
    return score


def correctness(record: EpisodeRecord, variant: str = "em", judge: Judge | None = None) -> float:
    """Best match of the submitted answer over the gold answers; 0 if there is no answer.

    ``variant``: ``"em"`` normalized exact match, ``"f1"`` token F1, ``"cover_em"`` normalized
    gold contained in the answer on token boundaries. ``cover_em`` is not a preset default
    because it pays an answer that lists candidates ("Paris, Lyon or Marseille").

    ``judge``, if given, replaces the string match: it is called as
    ``judge(question, answer, golds)`` and must return a number in [0, 1] (bool allowed). It
    must not be the policy being trained, or the policy grades itself. Gold answers are still
    validated, so bad data fails the same way with or without a judge.
    """
    check_record(record)
    if variant not in CORRECTNESS_VARIANTS:
        raise ValueError(f"unknown correctness variant {variant!r}; expected one of {CORRECTNESS_VARIANTS}")
    if judge is not None and not callable(judge):
        raise TypeError(f"judge must be callable, got {type(judge).__name__}")
    golds = record.question.answers
    for gold in golds:
        if not answer_tokens(gold):
            qid = record.question.qid
            raise ValueError(f"question {qid!r}: gold answer {gold!r} is empty after normalization")
    answer = record.answer
    if answer is None:
        return 0.0
    if judge is not None:
        return _score_from_judge(judge(record.question.question, answer, golds))
    if variant == "em":
        return float(any(exact_match(answer, gold) for gold in golds))
    if variant == "cover_em":
        return float(any(cover_match(answer, gold) for gold in golds))
    return max(token_f1(answer, gold) for gold in golds)


def format_score(record: EpisodeRecord) -> float:
    """Share of turns whose action parsed; 0 for an episode that did not end with an answer.

    Gating on the answer means a policy cannot collect format reward by emitting well-formed
    searches until the budget runs out.
    """
    check_record(record)
    if record.answer is None:
        return 0.0
    return sum(turn.valid for turn in record.turns) / len(record.turns)


def distinct_query_count(record: EpisodeRecord) -> int:
    """Number of distinct executed queries, by :func:`~searchenv.rewards.normalize.query_key`.

    A query that normalizes to nothing (only punctuation) is not counted.
    """
    keys = {query_key(query) for query in record.queries}
    keys.discard("")
    return len(keys)


def retry(record: EpisodeRecord, strict: bool = False) -> float:
    """ReZero's persistence reward.

    0 unless the episode ends with an answer, and 0 without searches; otherwise
    ``min(1, 0.2 + 0.15 * min(n, 5))``, halved if any turn holds more than one ``<search>`` tag,
    rounded to 3 decimals.

    ``strict=False`` (ReZero): ``n`` counts every complete ``<search>`` tag the agent wrote, in
    valid and invalid turns alike, so repeating one query (or writing empty ones) pays.
    ``strict=True``: ``n`` counts distinct normalized executed queries, so a repeated query
    earns nothing more.
    """
    check_record(record)
    if record.answer is None:
        return 0.0
    n = distinct_query_count(record) if strict else sum(turn.search_tags for turn in record.turns)
    if n == 0:
        return 0.0
    value = min(1.0, 0.2 + 0.15 * min(n, 5))
    if any(turn.search_tags > 1 for turn in record.turns):
        value *= 0.5
    return round(value, 3)


def evidence(record: EpisodeRecord) -> float:
    """1.0 if a search returned any gold supporting document, else 0.0.

    ReZero matches the gold chunk's text inside the search results; we match by doc id. Only
    the hits of valid search turns count: a ``read`` of a guessed id is not evidence found by
    searching. A question without ``supporting_doc_ids`` scores 0.0 (its task simply cannot pay
    this component); that is a property of the data, not an error.
    """
    check_record(record)
    gold = set(record.question.supporting_doc_ids)
    if not gold:
        return 0.0
    for turn in record.turns:
        if turn.valid and turn.tool == "search" and gold.intersection(turn.hit_doc_ids):
            return 1.0
    return 0.0


def diversity(record: EpisodeRecord, reward_operators: bool = True) -> float:
    """ReZero's query-diversity score over the executed queries.

    No query: 0. One query: 0.2. Otherwise, with ``q`` queries::

        base      = min(0.4, 0.2 * unique)           unique by normalized base text
        spread    = 0.4 * (1 - mean pairwise query_similarity)
        operators = min(0.15, 0.05 * distinct operators) + 0.05 * share of queries with one
        penalties = 0.2 per base seen before + 0.1 per pair with base similarity in (0.8, 1)
                    (the pair penalty halved when >= 2 distinct operators are used)
        score     = clip(base + spread + operators - penalties, 0, 1)

    As in ReZero, duplicates are judged on the base text alone, so two queries made only of
    different quoted phrases count as duplicates (their base texts are both empty).

    ``reward_operators=False`` drops the operator bonus and treats all queries as operator-free.
    BM25 ignores ``site:``/``filetype:``/quotes, so on this environment the bonus pays for
    syntax that changes nothing; the presets keep ReZero's behaviour (True) for comparability.
    """
    check_record(record)
    queries = record.queries
    if not queries:
        return 0.0
    if len(queries) == 1:
        return 0.2
    normalized = [normalize_query(query) for query in queries]
    if not reward_operators:
        normalized = [(base, ()) for base, _ in normalized]

    all_operators = {operator for _, operators in normalized for operator in operators}
    with_operator = sum(1 for _, operators in normalized if operators)
    operator_bonus = min(0.15, 0.05 * len(all_operators)) + 0.05 * with_operator / len(queries)

    seen: set[str] = set()
    duplicates = 0
    for base, _ in normalized:
        duplicates += base in seen
        seen.add(base)

    similarity_sum = 0.0
    similar_pairs = 0
    pairs = 0
    for i, (base_i, operators_i) in enumerate(normalized):
        for base_j, operators_j in normalized[i + 1 :]:
            pairs += 1
            base_ratio = SequenceMatcher(None, base_i, base_j).ratio()
            similarity_sum += base_ratio * operator_factor(operators_i, operators_j)
            similar_pairs += 0.8 < base_ratio < 1.0

    similarity_penalty = 0.1 * similar_pairs * (0.5 if len(all_operators) >= 2 else 1.0)
    spread = 0.4 * (1.0 - similarity_sum / pairs)
    base_reward = min(0.4, 0.2 * len(seen))
    total = base_reward + spread + operator_bonus - similarity_penalty - 0.2 * duplicates
    return min(1.0, max(0.0, total))
