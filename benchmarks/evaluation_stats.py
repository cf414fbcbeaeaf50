"""Statistics over evaluation rows: per-question means and the intervals of ``searchenv.metrics``.

Intervals resample *questions* (the samples of one question are not independent): each question
contributes the mean over its samples. ``benchmarks.evaluation`` re-exports these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from searchenv.metrics import bootstrap_ci, paired_bootstrap_diff, pass_at_k_per_question

Row = Mapping[str, Any]


def per_question(
    rows: Sequence[Row], value: str | Callable[[Row], float], question_ids: Sequence[str] | None = None
) -> dict[str, float]:
    """Mean of ``value`` (a row field or a function of a row) over each question's samples.

    Keyed in ``question_ids`` order, or by sorted id. The order is the one the bootstrap draws
    over: the leaderboard keeps split order, the experiments sorted ids.
    """
    pick = (lambda row: row[value]) if isinstance(value, str) else value
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["qid"], []).append(float(pick(row)))
    order = list(question_ids) if question_ids is not None else sorted(groups)
    return {qid: float(np.mean(groups[qid])) for qid in order}


def interval(values: Sequence[float], *, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean and 95% percentile bootstrap interval, as a dict (``searchenv.metrics.bootstrap_ci``)."""
    return bootstrap_ci(list(values), n_resamples=n_resamples, seed=seed).to_dict()


def correct_matrix(rows: Sequence[Row], question_ids: Sequence[str] | None = None) -> np.ndarray:
    """[questions x samples] booleans; questions in ``question_ids`` order or by sorted id."""
    groups: dict[str, list[bool]] = {}
    for row in sorted(rows, key=lambda r: (r.get("seed", 0), r["sample"])):
        groups.setdefault(row["qid"], []).append(bool(row["correct"]))
    order = list(question_ids) if question_ids is not None else sorted(groups)
    return np.array([groups[qid] for qid in order], dtype=bool)


def pass_at_k_intervals(matrix: np.ndarray, ks: Sequence[int], n_resamples: int = 2000) -> dict[int, dict]:
    """pass@k with its interval over questions for each ``k`` (unbiased estimator per question)."""
    return {k: interval(pass_at_k_per_question(matrix, k).tolist(), n_resamples=n_resamples) for k in ks}


def paired_difference(
    rows_a: Sequence[Row],
    rows_b: Sequence[Row],
    value: str | Callable[[Row], float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of mean(value | a) - mean(value | b) over the questions both cover.

    Raises:
        ValueError: the two sets of rows share no question.
    """
    per_a, per_b = per_question(rows_a, value), per_question(rows_b, value)
    shared = sorted(set(per_a) & set(per_b))
    if not shared:
        raise ValueError("the two agents share no questions")
    a, b = [per_a[q] for q in shared], [per_b[q] for q in shared]
    return paired_bootstrap_diff(a, b, n_resamples=n_resamples, seed=seed).to_dict()
