"""Tests of searchenv.metrics: pass@k, bootstrap intervals, diversity and episode statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchenv.episode import EpisodeRecord, Turn
from searchenv.metrics import (
    EpisodeStats,
    Interval,
    answer_scores,
    bootstrap_ci,
    default_ks,
    distinct_queries_across_samples,
    episode_stats,
    mean_components,
    mean_pairwise_similarity,
    paired_bootstrap_diff,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_per_question,
    summarize_episode_stats,
    unique_query_ratio,
)
from tasks.records import Question

# ---------------------------------------------------------------------------------------------- pass@k


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,k", [(1, 1), (5, 1), (5, 5), (16, 4), (100, 10)])
def test_pass_at_k_all_and_none_correct(n: int, k: int) -> None:
    assert pass_at_k(n, n, k) == 1.0
    assert pass_at_k(n, 0, k) == 0.0


@pytest.mark.parametrize(
    "n,c,k",
    [
        (2, 1, 1),
        (4, 1, 2),
        (5, 2, 2),
        (10, 3, 1),
        (10, 3, 4),
        (10, 7, 4),
        (16, 1, 8),
        (50, 5, 10),
        (200, 3, 64),
    ],
)
def test_pass_at_k_matches_comb_formula(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), rel=1e-12, abs=1e-12)


def test_pass_at_1_is_the_success_rate() -> None:
    for n in range(1, 12):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(2000, 1000) overflows a float; the product form must not.
    value = pass_at_k(2000, 1, 1000)
    assert value == pytest.approx(0.5)
    assert 0.0 <= pass_at_k(5000, 2, 100) <= 1.0


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (3, 4, 1), (3, -1, 1), (3, 1, 0), (0, 0, 0)])
def test_pass_at_k_rejects_invalid_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers() -> None:
    with pytest.raises(TypeError):
        pass_at_k(4.0, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pass_at_k(4, True, 1)  # type: ignore[arg-type]


def test_pass_at_k_curve_default_ks_and_values() -> None:
    matrix = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], [0] * 8], dtype=bool)
    curve = pass_at_k_curve(matrix)
    assert list(curve) == [1, 2, 4, 8]
    for k, value in curve.items():
        expected = (closed_form(8, 1, k) + 1.0 + 0.0) / 3
        assert value == pytest.approx(expected)
    # Monotone in k.
    values = list(curve.values())
    assert values == sorted(values)
    assert pass_at_k_curve(matrix, ks=[3]) == {3: pytest.approx((closed_form(8, 1, 3) + 1.0) / 3)}


def test_pass_at_k_curve_rejects_bad_matrices() -> None:
    with pytest.raises(ValueError):
        pass_at_k_curve([1, 0, 1])
    with pytest.raises(ValueError):
        pass_at_k_curve(np.zeros((0, 4)))
    with pytest.raises(ValueError):
        pass_at_k_curve([[0.5, 1.0]])
    with pytest.raises(ValueError):
        pass_at_k_curve([[1, 0]], ks=[3])
    with pytest.raises(ValueError):
        pass_at_k_per_question([[1, 0]], 0)


def test_default_ks() -> None:
    assert default_ks(1) == (1,)
    assert default_ks(4) == (1, 2, 4)
    assert default_ks(10) == (1, 2, 4, 8, 10)
    with pytest.raises(ValueError):
        default_ks(0)


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_and_contains_the_mean() -> None:
    values = np.random.default_rng(1).normal(size=50)
    first = bootstrap_ci(values, seed=3)
    assert first == bootstrap_ci(values, seed=3)
    assert first != bootstrap_ci(values, seed=4)
    assert first.low < first.mean < first.high
    assert first.mean == pytest.approx(values.mean())
    assert first.n == 50


def test_bootstrap_interval_covers_the_true_mean_at_nominal_rate() -> None:
    rng = np.random.default_rng(2024)
    true_mean, replications, covered = 0.3, 200, 0
    for replication in range(replications):
        sample = rng.random(100) < true_mean
        interval = bootstrap_ci(sample, n_resamples=1000, seed=replication)
        covered += interval.low <= true_mean <= interval.high
    assert 0.90 <= covered / replications <= 0.98


def test_bootstrap_narrows_with_more_data_and_lower_confidence() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(30), rng.random(3000)
    width = lambda ci: ci.high - ci.low  # noqa: E731
    assert width(bootstrap_ci(large)) < width(bootstrap_ci(small))
    assert width(bootstrap_ci(small, confidence=0.5)) < width(bootstrap_ci(small, confidence=0.95))


def test_bootstrap_accepts_statistics_without_axis() -> None:
    values = [1.0, 2.0, 3.0, 10.0]
    interval = bootstrap_ci(values, statistic=lambda x: float(sorted(x)[len(x) // 2]), n_resamples=200)
    assert interval.mean == 3.0
    assert 1.0 <= interval.low <= interval.high <= 10.0
    median = bootstrap_ci(values, statistic=np.median, n_resamples=200)
    assert median.mean == 2.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"values": []},
        {"values": [1.0, float("nan")]},
        {"values": [[1.0, 2.0]]},
        {"values": [1], "confidence": 1.0},
    ],
)
def test_bootstrap_rejects_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(**kwargs)


def test_paired_bootstrap_sign_and_pairing() -> None:
    rng = np.random.default_rng(7)
    difficulty = rng.random(80)  # shared per-question difficulty: pairing should remove it
    strong = (rng.random(80) < np.clip(difficulty + 0.25, 0, 1)).astype(float)
    weak = (rng.random(80) < difficulty).astype(float)
    better = paired_bootstrap_diff(strong, weak)
    worse = paired_bootstrap_diff(weak, strong)
    assert better.mean > 0 and better.excludes_zero
    assert worse.mean == pytest.approx(-better.mean)
    assert worse.high < 0
    # Identical inputs: exactly zero difference.
    same = paired_bootstrap_diff(strong, strong)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_is_tighter_than_unpaired_when_units_correlate() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(scale=5.0, size=60)
    a, b = base + 1.0 + rng.normal(scale=0.1, size=60), base + rng.normal(scale=0.1, size=60)
    paired = paired_bootstrap_diff(a, b)
    unpaired_width = (bootstrap_ci(a).high - bootstrap_ci(a).low) + (
        bootstrap_ci(b).high - bootstrap_ci(b).low
    )
    assert paired.high - paired.low < unpaired_width / 10
    assert paired.low < 1.0 < paired.high


def test_paired_bootstrap_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1, 0, 1], [1, 0])


def test_interval_helpers() -> None:
    interval = Interval(mean=0.5, low=0.25, high=0.75, n=10)
    assert interval.to_dict() == {"mean": 0.5, "low": 0.25, "high": 0.75, "n": 10}
    assert interval.excludes_zero
    assert not Interval(0.0, -0.1, 0.1, 3).excludes_zero
    assert "n=10" in str(interval)


# ---------------------------------------------------------------------------------------------- diversity


def test_unique_query_ratio() -> None:
    assert unique_query_ratio(["a b", "c d"]) == 1.0
    assert unique_query_ratio(
        ["capital of France", "capital of france?", "CAPITAL  of France"]
    ) == pytest.approx(1 / 3)
    assert unique_query_ratio(["x", "x", "y", "z"]) == pytest.approx(3 / 4)
    # Operators are part of a query's identity.
    assert unique_query_ratio(["capital of france", "capital of france site:gov.fr"]) == 1.0
    with pytest.raises(ValueError):
        unique_query_ratio([])
    with pytest.raises(TypeError):
        unique_query_ratio("capital of france")  # type: ignore[arg-type]


def test_mean_pairwise_similarity() -> None:
    assert mean_pairwise_similarity(["capital of france", "Capital of France!"]) == 1.0
    assert mean_pairwise_similarity(["abc", "xyz"]) == 0.0
    # Three pairs: (same, same) = 1, the other two are 0.
    assert mean_pairwise_similarity(["abc", "abc", "xyz"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        mean_pairwise_similarity(["only one"])


def test_distinct_queries_across_samples() -> None:
    samples = [["capital of France", "France flag"], ["capital of france"], [], ["France Flag", "euro"]]
    assert distinct_queries_across_samples(samples) == 3
    assert distinct_queries_across_samples([[]]) == 0
    with pytest.raises(ValueError):
        distinct_queries_across_samples([])
    with pytest.raises(TypeError):
        distinct_queries_across_samples(["capital of france"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------- episodes

QUESTION = Question(
    qid="q1",
    question="What is the capital of France?",
    answers=("Paris",),
    supporting_doc_ids=("fr/gov",),
    split="test",
)


def search(query: str, hits: tuple[str, ...]) -> Turn:
    return Turn(
        raw=f"<search>{query}</search>", tool="search", argument=query, search_tags=1, hit_doc_ids=hits
    )


def answer(text: str) -> Turn:
    return Turn(raw=f"<answer>{text}</answer>", tool="answer", argument=text)


READ = Turn(raw="<read>fr/gov</read>", tool="read", argument="fr/gov")
INVALID = Turn(raw="blah", tool=None, error="no action tag")


def test_episode_stats_counts_and_retry_after_failure() -> None:
    record = EpisodeRecord(
        QUESTION,
        (
            search("france", ("de/x", "it/y")),
            INVALID,
            search("capital of france", ("fr/gov",)),
            READ,
            answer("Paris"),
        ),
    )
    stats = episode_stats(record)
    assert stats == EpisodeStats(
        turns=5,
        invalid_turns=1,
        searches=2,
        reads=1,
        answered=True,
        had_failed_search=True,
        retried_after_failure=True,
    )


def test_episode_stats_failure_without_retry_and_success_first_time() -> None:
    gave_up = episode_stats(EpisodeRecord(QUESTION, (READ, search("france", ("de/x",)), answer("Berlin"))))
    assert (gave_up.had_failed_search, gave_up.retried_after_failure) == (True, False)
    # A search after a *successful* one is not a retry after failure.
    fine = episode_stats(EpisodeRecord(QUESTION, (search("a", ("fr/gov",)), search("b", ("fr/gov",)))))
    assert (fine.had_failed_search, fine.retried_after_failure, fine.answered) == (False, False, False)
    no_gold = Question(qid="q2", question="?", answers=("x",), split="test")
    undefined = episode_stats(EpisodeRecord(no_gold, (search("a", ()), search("b", ()))))
    assert (undefined.had_failed_search, undefined.retried_after_failure) == (None, None)


def test_summarize_episode_stats() -> None:
    records = [
        EpisodeRecord(QUESTION, (search("france", ("de/x",)), search("paris", ("fr/gov",)), answer("Paris"))),
        EpisodeRecord(QUESTION, (search("france", ("de/x",)), answer("Lyon"))),
        EpisodeRecord(QUESTION, (INVALID, INVALID, READ)),
    ]
    summary = summarize_episode_stats([episode_stats(r) for r in records])
    assert summary["episodes"] == 3
    assert summary["searches_per_episode"] == pytest.approx(1.0)
    assert summary["reads_per_episode"] == pytest.approx(1 / 3)
    assert summary["format_error_rate"] == pytest.approx(2 / 8)
    assert summary["retry_after_failed_search"] == pytest.approx(1 / 2)
    assert summary["episodes_with_failed_search"] == 2
    assert summary["answer_rate"] == pytest.approx(2 / 3)
    only_success = summarize_episode_stats([episode_stats(EpisodeRecord(QUESTION, (answer("Paris"),)))])
    assert only_success["retry_after_failed_search"] is None
    with pytest.raises(ValueError):
        summarize_episode_stats([])


def test_answer_scores() -> None:
    exact = answer_scores(EpisodeRecord(QUESTION, (answer("paris."),)))
    assert exact == {"em": 1.0, "f1": 1.0, "cover_em": 1.0}
    covered = answer_scores(EpisodeRecord(QUESTION, (answer("the city of Paris"),)))
    assert covered["em"] == 0.0 and covered["cover_em"] == 1.0 and 0.0 < covered["f1"] < 1.0
    none = answer_scores(EpisodeRecord(QUESTION, (search("x", ()),)))
    assert none == {"em": 0.0, "f1": 0.0, "cover_em": 0.0}


def test_mean_components() -> None:
    assert mean_components([{"a": 1.0, "b": 0.0}, {"b": 1.0, "a": 0.0}]) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError):
        mean_components([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError):
        mean_components([])
