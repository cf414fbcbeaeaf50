"""Text normalization and string-match primitives shared by rewards and metrics.

Two normalizations are used here, because answers and queries are compared for different reasons:

* :func:`normalize_answer` is SQuAD's answer normalization (case-fold, delete punctuation, drop
  the English articles, collapse whitespace), made unicode-aware. It lives in ``tasks.text``
  so that task builders (dedup, gold checks) and rewards agree on what "the same answer" is;
  it is re-exported here under its usual name.
* :func:`normalize_query` is ReZero's query normalization for the diversity score: search
  operators are pulled out into their own list, and punctuation becomes spaces.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher

from tasks.text import ARTICLES, normalize_answer


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def answer_tokens(text: str) -> list[str]:
    """The tokens of :func:`normalize_answer`.

    >>> answer_tokens("The Hague, Netherlands")
    ['hague', 'netherlands']
    """
    return normalize_answer(text).split()


def _gold_tokens(gold: str) -> list[str]:
    tokens = answer_tokens(_require_str(gold, "gold answer"))
    if not tokens:
        # A gold that normalizes to nothing ("The", "?") would match an empty answer: bad data.
        raise ValueError(f"gold answer {gold!r} is empty after normalization")
    return tokens


def exact_match(prediction: str, gold: str) -> bool:
    """Normalized exact match.

    >>> exact_match("the Eiffel Tower.", "Eiffel tower")
    True
    >>> exact_match("Paris, France", "Paris")
    False
    """
    return answer_tokens(_require_str(prediction, "prediction")) == _gold_tokens(gold)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between normalized prediction and gold (bag of tokens).

    An empty prediction scores 0; a gold that normalizes to nothing raises ``ValueError``.

    >>> round(token_f1("the capital Paris", "Paris"), 4)
    0.6667
    >>> token_f1("Paris", "paris")
    1.0
    >>> token_f1("", "Paris")
    0.0
    """
    gold_tokens = _gold_tokens(gold)
    predicted = answer_tokens(_require_str(prediction, "prediction"))
    overlap = sum((Counter(predicted) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def cover_match(prediction: str, gold: str) -> bool:
    """Whether the normalized gold occurs in the normalized prediction on token boundaries.

    >>> cover_match("It is Paris, I think", "Paris")
    True
    >>> cover_match("Parisian", "Paris")
    False
    >>> cover_match("New York City", "new york")
    True
    """
    gold_tokens = _gold_tokens(gold)
    predicted = answer_tokens(_require_str(prediction, "prediction"))
    width = len(gold_tokens)
    return any(predicted[i : i + width] == gold_tokens for i in range(len(predicted) - width + 1))


# Search operators, in ReZero's sense. Deviations from ReZero's regex, all so that plain text is
# not mistaken for an operator and operators are removed from the base text they were found in:
# OR/AND must be upper case and stand alone; a negation ``-word`` must start a token (so the
# "-known" of "well-known" is text); site:/filetype: are case-insensitive.
_OPERATOR_PATTERN = re.compile(
    r"""
        (?i:site|filetype):\S+          # site:example.org, filetype:pdf
      | "[^"]+"                         # a quoted phrase
      | (?<!\S)(?:OR|AND)(?!\S)         # boolean operators, upper case only
      | (?<!\S)-\w+                     # negation at the start of a token
    """,
    re.VERBOSE,
)
_NON_WORD = re.compile(r"[^\w\s]")


def _normalize_operator(operator: str) -> str:
    return operator if operator in ("OR", "AND") else " ".join(operator.casefold().split())


def normalize_query(query: str) -> tuple[str, tuple[str, ...]]:
    """Split a search query into its normalized base text and its operators.

    The base is the query without operators, case-folded, punctuation turned into spaces and
    whitespace collapsed. Operators keep their order of appearance (case-folded, except
    OR/AND).

    >>> normalize_query("Capital of  FRANCE?")
    ('capital of france', ())
    >>> normalize_query('"eiffel tower" height site:Wikipedia.org -paris')
    ('height', ('"eiffel tower"', 'site:wikipedia.org', '-paris'))
    >>> normalize_query("well-known cats OR dogs")
    ('well known cats dogs', ('OR',))
    """
    _require_str(query, "query")
    operators = tuple(_normalize_operator(match.group(0)) for match in _OPERATOR_PATTERN.finditer(query))
    base = _NON_WORD.sub(" ", _OPERATOR_PATTERN.sub(" ", query).casefold())
    return " ".join(base.split()), operators


def query_key(query: str) -> str:
    """The identity of a query for "is this the same query again?" (strict retry, metrics).

    Case-folded, punctuation to spaces, whitespace collapsed, operators left in as words:
    two queries share a key when they send the same words to the retriever. BM25 ignores
    quotes and ``site:`` syntax, so a quoted phrase is the same query as its bare words.

    >>> query_key("Capital of France") == query_key("capital of  france?")
    True
    >>> query_key('"capital of france"') == query_key("capital of france")
    True
    >>> query_key("capital of france site:gov.fr")
    'capital of france site gov fr'
    """
    return " ".join(_NON_WORD.sub(" ", _require_str(query, "query").casefold()).split())


def base_similarity(query_a: str, query_b: str) -> float:
    """The difflib ratio of the two normalized base texts, operators ignored.

    >>> base_similarity("capital of France", "CAPITAL OF FRANCE!")
    1.0
    """
    return SequenceMatcher(None, normalize_query(query_a)[0], normalize_query(query_b)[0]).ratio()


def operator_factor(operators_a: tuple[str, ...], operators_b: tuple[str, ...]) -> float:
    """ReZero's discount on similarity for queries that use different operators.

    ``max(0.3, 1 - 0.2 * d)`` with ``d`` the size of the symmetric difference of the operator
    sets (1.0 when they agree).

    >>> operator_factor(("site:a.org",), ())
    0.8
    >>> operator_factor(("a", "b", "c", "d"), ())
    0.3
    """
    differing = len(set(operators_a) ^ set(operators_b))
    return max(0.3, 1.0 - 0.2 * differing) if differing else 1.0


def query_similarity(query_a: str, query_b: str) -> float:
    """ReZero's query similarity in [0, 1].

    The difflib ratio of the base texts times :func:`operator_factor` of the operators.

    >>> query_similarity("capital of france", "capital of france")
    1.0
    >>> query_similarity("capital of france", "capital of france site:gov.fr")
    0.8
    >>> query_similarity("abc", "xyz")
    0.0
    """
    base_a, operators_a = normalize_query(query_a)
    base_b, operators_b = normalize_query(query_b)
    return SequenceMatcher(None, base_a, base_b).ratio() * operator_factor(operators_a, operators_b)


__all__ = [
    "ARTICLES",
    "answer_tokens",
    "base_similarity",
    "cover_match",
    "exact_match",
    "normalize_answer",
    "normalize_query",
    "operator_factor",
    "query_key",
    "query_similarity",
    "token_f1",
]
