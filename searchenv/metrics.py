"""Evaluation metrics shared by the trainers and the leaderboard (pure numpy, no torch).

pass@k and bootstrap intervals live in ``searchenv.statistics`` and are re-exported here.
Two families of their own:

- query diversity: share of distinct queries, mean pairwise similarity, distinct queries over
  the samples of one question (queries are compared after ``searchenv.rewards`` normalization).
- per-episode figures: answer scores (EM, F1, cover-EM) and behaviour (searches, reads,
  retrying after a failed search, format errors).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from searchenv.statistics import (
    Interval,
    bootstrap_ci,
    default_ks,
    paired_bootstrap_diff,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_per_question,
)

if TYPE_CHECKING:
    from searchenv.episode import EpisodeRecord

ANSWER_VARIANTS: tuple[str, ...] = ("em", "f1", "cover_em")


def _rewards() -> Any:
    # Imported lazily: metrics must stay importable on its own (and rewards may import metrics).
    from searchenv import rewards

    return rewards


# ----------------------------------------------------------------------------------------------
# query diversity


def _query_key(query: str) -> str:
    # The same identity as the strict retry reward: the words sent to the retriever.
    return _rewards().query_key(query)


def _check_queries(queries: Sequence[str], minimum: int, what: str) -> None:
    if isinstance(queries, str):
        raise TypeError("queries must be a sequence of strings, not one string")
    if len(queries) < minimum:
        raise ValueError(f"{what} needs at least {minimum} queries, got {len(queries)}")


def unique_query_ratio(queries: Sequence[str]) -> float:
    """Distinct normalized queries / queries (1.0 when no query repeats).

    >>> unique_query_ratio(["capital of France", "Capital of  France!", "France currency"])
    0.6666666666666666
    """
    _check_queries(queries, 1, "unique_query_ratio")
    return len({_query_key(q) for q in queries}) / len(queries)


def mean_pairwise_similarity(queries: Sequence[str]) -> float:
    """Mean ``searchenv.rewards.query_similarity`` over all unordered pairs (needs >= 2 queries).

    >>> mean_pairwise_similarity(["capital of France", "capital of France"])
    1.0
    """
    _check_queries(queries, 2, "mean_pairwise_similarity")
    similarity = _rewards().query_similarity
    scores = [similarity(q1, q2) for q1, q2 in itertools.combinations(queries, 2)]
    return float(np.mean(scores))


def distinct_queries_across_samples(samples: Sequence[Sequence[str]]) -> int:
    """Number of distinct normalized queries over the samples (episodes) of one question.

    >>> distinct_queries_across_samples([["capital of France"], ["capital of france", "France flag"], []])
    2
    """
    if isinstance(samples, str) or any(isinstance(s, str) for s in samples):
        raise TypeError("samples must be a sequence of query lists, one per episode")
    if len(samples) == 0:
        raise ValueError("distinct_queries_across_samples needs at least one sample")
    return len({_query_key(q) for queries in samples for q in queries})


def query_diversity_summary(
    episode_queries: Sequence[Sequence[str]], question_ids: Sequence[str]
) -> dict[str, float | int | None]:
    """Diversity over a batch of episodes; ``question_ids[i]`` is the question of episode ``i``.

    Per-episode figures average over the episodes where they are defined (>= 1 query for the
    unique ratio, >= 2 for pairwise similarity); the counts say how many that was. A figure
    with no defined episode is None.

    >>> summary = query_diversity_summary([["a b", "a b"], ["c"], []], ["q1", "q1", "q2"])
    >>> [summary[name] for name in ("unique_query_ratio", "distinct_queries_per_question")]
    [0.75, 1.0]
    """
    if len(episode_queries) != len(question_ids):
        raise ValueError(f"{len(episode_queries)} query lists for {len(question_ids)} question ids")
    ratios = [unique_query_ratio(q) for q in episode_queries if len(q) >= 1]
    similarities = [mean_pairwise_similarity(q) for q in episode_queries if len(q) >= 2]
    by_question: dict[str, list[Sequence[str]]] = {}
    for qid, queries in zip(question_ids, episode_queries, strict=True):
        by_question.setdefault(qid, []).append(queries)
    distinct = [distinct_queries_across_samples(samples) for samples in by_question.values()]
    return {
        "unique_query_ratio": float(np.mean(ratios)) if ratios else None,
        "episodes_with_queries": len(ratios),
        "mean_pairwise_similarity": float(np.mean(similarities)) if similarities else None,
        "episodes_with_two_queries": len(similarities),
        "distinct_queries_per_question": float(np.mean(distinct)) if distinct else None,
        "questions": len(distinct),
    }


# ----------------------------------------------------------------------------------------------
# per-episode figures


def answer_scores(record: EpisodeRecord) -> dict[str, float]:
    """EM, F1 and cover-EM of an episode's answer (0 for an episode without an answer)."""
    correctness = _rewards().correctness
    return {variant: float(correctness(record, variant=variant)) for variant in ANSWER_VARIANTS}


@dataclass(frozen=True)
class EpisodeStats:
    """Behaviour of one episode.

    A search *failed* when none of its hits is a gold supporting passage. ``retried_after_failure``
    is True when a later search follows a failed one; both are None when the question lists
    no supporting passages (the notion is undefined then).
    """

    turns: int
    invalid_turns: int
    searches: int
    reads: int
    answered: bool
    had_failed_search: bool | None
    retried_after_failure: bool | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def episode_stats(record: EpisodeRecord) -> EpisodeStats:
    """Count the actions of an episode and detect retries after a failed search."""
    valid = [t for t in record.turns if t.valid]
    gold = frozenset(record.question.supporting_doc_ids)
    had_failed: bool | None = None
    retried: bool | None = None
    if gold:
        had_failed = retried = False
        seen_failure = False
        for turn in valid:
            if turn.tool != "search":
                continue
            if seen_failure:
                retried = True
            if gold.isdisjoint(turn.hit_doc_ids):
                seen_failure = had_failed = True
    return EpisodeStats(
        turns=len(record.turns),
        invalid_turns=len(record.turns) - len(valid),
        searches=sum(t.tool == "search" for t in valid),
        reads=sum(t.tool == "read" for t in valid),
        answered=record.answer is not None,
        had_failed_search=had_failed,
        retried_after_failure=retried,
    )


def summarize_episode_stats(stats: Sequence[EpisodeStats]) -> dict[str, float | int | None]:
    """Means over episodes; the retry share is over episodes that had a failed search.

    ``format_error_rate`` pools turns (invalid turns / turns), so long episodes weigh more.
    A share with an empty denominator is None, never a silent 0.
    """
    if not stats:
        raise ValueError("summarize_episode_stats needs at least one episode")
    total_turns = sum(s.turns for s in stats)
    with_failure = [s for s in stats if s.had_failed_search]
    return {
        "episodes": len(stats),
        "searches_per_episode": float(np.mean([s.searches for s in stats])),
        "reads_per_episode": float(np.mean([s.reads for s in stats])),
        "turns_per_episode": float(np.mean([s.turns for s in stats])),
        "answer_rate": float(np.mean([s.answered for s in stats])),
        "format_error_rate": (sum(s.invalid_turns for s in stats) / total_turns) if total_turns else None,
        "retry_after_failed_search": (
            float(np.mean([bool(s.retried_after_failure) for s in with_failure])) if with_failure else None
        ),
        "episodes_with_failed_search": len(with_failure),
    }


def mean_components(breakdowns: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each reward component over episodes (a component missing from one raises).

    >>> mean_components([{"format": 1.0, "retry": 0.5}, {"format": 0.0, "retry": 0.5}])
    {'format': 0.5, 'retry': 0.5}
    """
    if not breakdowns:
        raise ValueError("mean_components needs at least one breakdown")
    names = list(breakdowns[0])
    for index, breakdown in enumerate(breakdowns):
        if set(breakdown) != set(names):
            raise ValueError(
                f"breakdown {index} has components {sorted(breakdown)}, expected {sorted(names)}"
            )
    return {name: float(np.mean([b[name] for b in breakdowns])) for name in names}


__all__ = [
    "ANSWER_VARIANTS",
    "EpisodeStats",
    "Interval",
    "answer_scores",
    "bootstrap_ci",
    "default_ks",
    "distinct_queries_across_samples",
    "episode_stats",
    "mean_components",
    "mean_pairwise_similarity",
    "paired_bootstrap_diff",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_at_k_per_question",
    "query_diversity_summary",
    "summarize_episode_stats",
    "unique_query_ratio",
]
