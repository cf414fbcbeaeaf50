"""Evaluation metrics shared by the trainers and the leaderboard (pure numpy, no torch).

Four families:

- pass@k: the unbiased estimator of Chen et al. (2021) from ``n`` samples of which ``c`` are
  correct, and its curve over ``k = 1, 2, 4, ...``.
- uncertainty: percentile bootstrap intervals, and a paired bootstrap for the difference
  between two agents evaluated on the same questions.
- query diversity: share of distinct queries, mean pairwise similarity, distinct queries over
  the samples of one question (queries are compared after ``searchenv.rewards`` normalization).
- per-episode figures: answer scores (EM, F1, cover-EM) and behaviour (searches, reads,
  retrying after a failed search, format errors).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from searchenv.episode import EpisodeRecord

ANSWER_VARIANTS: tuple[str, ...] = ("em", "f1", "cover_em")

# Bootstrap resamples are drawn in chunks so that memory stays around this many floats.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def _rewards() -> Any:
    # Imported lazily: metrics must stay importable on its own (and rewards may import metrics).
    from searchenv import rewards

    return rewards


# ----------------------------------------------------------------------------------------------
# pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the (huge) binomials.

    >>> pass_at_k(10, 0, 3), pass_at_k(10, 10, 3)
    (0.0, 1.0)
    >>> round(pass_at_k(4, 1, 2), 6)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    >>> pass_at_k(2, 1, 3)
    Traceback (most recent call last):
    ...
    ValueError: pass@k needs n >= k >= 1 and 0 <= c <= n; got n=2, c=1, k=3
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pass@k: {name} must be an int, got {type(value).__name__}")
    if not (1 <= k <= n and 0 <= c <= n):
        raise ValueError(f"pass@k needs n >= k >= 1 and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every size-k subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def default_ks(n: int) -> tuple[int, ...]:
    """Powers of two up to ``n``, plus ``n`` itself when it is not one.

    >>> default_ks(8), default_ks(6), default_ks(1)
    ((1, 2, 4, 8), (1, 2, 4, 6), (1,))
    """
    if n < 1:
        raise ValueError(f"need at least one sample per question, got n={n}")
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    if ks[-1] != n:
        ks.append(n)
    return tuple(ks)


def _as_correct_matrix(correct_matrix: Any) -> np.ndarray:
    matrix = np.asarray(correct_matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"correct_matrix must be 2-D [questions x samples], non-empty; got {matrix.shape}")
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError("correct_matrix must hold booleans (or 0/1)")
    return matrix.astype(bool)


def pass_at_k_per_question(correct_matrix: Any, k: int) -> np.ndarray:
    """pass@k of every question (row) of a ``[questions x n samples]`` boolean matrix.

    >>> pass_at_k_per_question([[1, 0], [0, 0]], 1).tolist()
    [0.5, 0.0]
    """
    matrix = _as_correct_matrix(correct_matrix)
    n = matrix.shape[1]
    return np.array([pass_at_k(n, int(c), k) for c in matrix.sum(axis=1)], dtype=np.float64)


def pass_at_k_curve(correct_matrix: Any, ks: Iterable[int] | None = None) -> dict[int, float]:
    """Mean pass@k over questions for each ``k`` (default :func:`default_ks` of n samples).

    >>> pass_at_k_curve([[True, False, False, False], [False, False, False, False]])
    {1: 0.125, 2: 0.25, 4: 0.5}
    """
    matrix = _as_correct_matrix(correct_matrix)
    chosen = default_ks(matrix.shape[1]) if ks is None else tuple(ks)
    return {int(k): float(pass_at_k_per_question(matrix, int(k)).mean()) for k in chosen}


# ----------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``n`` is the number of resampled units."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def _as_values(values: Any, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return array


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resampled_statistics(
    columns: Sequence[np.ndarray],
    statistic: Callable[..., Any],
    n_resamples: int,
    seed: int,
) -> list[np.ndarray]:
    """``statistic`` of each column on the same bootstrap index draws (so pairs stay paired)."""
    rng = np.random.default_rng(seed)
    n = columns[0].size
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    out: list[list[np.ndarray]] = [[] for _ in columns]
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        index = rng.integers(0, n, size=(rows, n))
        for column, sink in zip(columns, out, strict=True):
            samples = column[index]
            try:
                stats = np.asarray(statistic(samples, axis=1), dtype=np.float64)
            except TypeError:  # a statistic without an ``axis`` argument
                stats = np.array([statistic(row) for row in samples], dtype=np.float64)
            sink.append(stats.reshape(rows))
    return [np.concatenate(parts) for parts in out]


def _percentile_interval(point: float, draws: np.ndarray, confidence: float, n: int) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(mean=float(point), low=float(low), high=float(high), n=n)


def bootstrap_ci(
    values: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., Any] = np.mean,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(values)``; deterministic for a given seed.

    >>> ci = bootstrap_ci([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    >>> ci.mean, ci.n, 0.3 <= ci.low < ci.mean < ci.high <= 1.0
    (0.7, 10, True)
    >>> bootstrap_ci([1.0, 1.0, 1.0])
    Interval(mean=1.0, low=1.0, high=1.0, n=3)
    """
    array = _as_values(values)
    _check_bootstrap_args(n_resamples, confidence)
    (draws,) = _resampled_statistics([array], statistic, n_resamples, seed)
    return _percentile_interval(float(statistic(array)), draws, confidence, array.size)


def paired_bootstrap_diff(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., Any] = np.mean,
) -> Interval:
    """Interval of ``statistic(a) - statistic(b)`` where ``a[i]`` and ``b[i]`` share unit ``i``.

    Units (questions) are resampled together, so per-question difficulty cancels out.

    >>> d = paired_bootstrap_diff([1, 1, 1, 0, 1, 1], [0, 1, 0, 0, 0, 1])
    >>> round(d.mean, 4), d.n, d.high > d.low
    (0.5, 6, True)
    """
    first, second = _as_values(a, "a"), _as_values(b, "b")
    if first.size != second.size:
        raise ValueError(f"paired bootstrap needs equal lengths, got {first.size} and {second.size}")
    _check_bootstrap_args(n_resamples, confidence)
    draws_a, draws_b = _resampled_statistics([first, second], statistic, n_resamples, seed)
    point = float(statistic(first)) - float(statistic(second))
    return _percentile_interval(point, draws_a - draws_b, confidence, first.size)


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
