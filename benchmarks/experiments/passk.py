"""NSR's claim: negative-only RL keeps pass@k at large k where PPO and GRPO narrow it.

The SFT start and the scale's RL arms (PPO, GRPO, NSR and W-REINFORCE: same start, same
budget), each sampled ``passk_samples`` times per test question at temperature 1; pass@k with
intervals over questions, paired differences against the start at k = 1 and the largest k, and
the crossing point (Yue et al.'s question: does the start catch up at large k?).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.evaluation import correct_matrix, interval
from benchmarks.experiments.common import Context, copy_metrics, payload, scale_note, write_outputs
from benchmarks.tables import cell, table
from searchenv.metrics import paired_bootstrap_diff, pass_at_k_per_question

KS = (1, 2, 4, 8, 16, 32, 64)


def train_and_sample(ctx: Context) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """Train the RL arms, then the sampled episodes of every run (shared with ``diversity``)."""
    runs = ctx.train(ctx.scale.arms.passk)
    return runs, ctx.sampled_rows(("sft", *ctx.scale.run_names(ctx.scale.arms.passk)))


def per_question_curves(
    ctx: Context, rows: Mapping[str, list[dict]], ks: Sequence[int]
) -> dict[str, dict[int, np.ndarray]]:
    """Per policy (the SFT start and each arm) and k, pass@k of every question.

    An arm's value is the mean over its seeds of each seed's unbiased pass@k: the seeds are
    separate policies, so their samples are not pooled into one larger n.
    """
    questions = sorted({r["qid"] for r in rows["sft"]})

    def curve(run_rows: list[dict]) -> dict[int, np.ndarray]:
        matrix = correct_matrix(run_rows, questions)
        return {k: pass_at_k_per_question(matrix, k) for k in ks}

    curves = {"sft": curve(rows["sft"])}
    for arm in ctx.scale.arms.passk:
        seeds = [curve(rows[name]) for name in ctx.scale.run_names([arm])]
        curves[arm] = {k: np.mean([seed[k] for seed in seeds], axis=0) for k in ks}
    return curves


def crossing(
    rl: Mapping[int, np.ndarray], start: Mapping[int, np.ndarray], n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The first k at which the start's pass@k reaches the RL policy's, with a bootstrap interval.

    Questions are resampled; a resample whose curves never cross counts as beyond the largest k
    (reported as None when the interval's end lies there).

    >>> rl = {1: np.array([1.0, 0.0]), 2: np.array([1.0, 0.5])}
    >>> crossing(rl, {1: np.array([0.5, 0.0]), 2: np.array([1.0, 1.0])}, n_resamples=200)["k"]
    2
    """
    ks = sorted(rl)
    beyond = ks[-1] * 2

    def first(index: np.ndarray) -> int:
        for k in ks:
            if start[k][index].mean() >= rl[k][index].mean():
                return k
        return beyond

    n = len(rl[ks[0]])
    rng = np.random.default_rng(seed)
    draws = np.array([first(rng.integers(0, n, n)) for _ in range(n_resamples)])
    point = first(np.arange(n))
    low, high = (int(np.percentile(draws, q, method="lower")) for q in (2.5, 97.5))
    return {
        "k": None if point == beyond else point,
        "low": None if low == beyond else low,
        "high": None if high == beyond else high,
        "share_never": float(np.mean(draws == beyond)),
    }


def run(ctx: Context) -> dict[str, Any]:
    """Train, sample, and write ``results/passk``."""
    started = time.perf_counter()
    runs, rows = train_and_sample(ctx)
    out = ctx.out("passk")
    arms = ctx.scale.arms.passk
    copy_metrics(ctx.runs, ctx.scale.run_names(arms), out)
    n = ctx.scale.passk_samples
    ks = [k for k in KS if k <= n]
    per_q = per_question_curves(ctx, rows, ks)
    curves = {name: {k: interval(values[k].tolist()) for k in ks} for name, values in per_q.items()}
    diffs, crossings = {}, {}
    for name in arms:
        for k in (1, ks[-1]):
            diffs[f"pass@{k}: {name} - sft"] = paired_bootstrap_diff(
                per_q[name][k].tolist(), per_q["sft"][k].tolist(), seed=0
            ).to_dict()
        crossings[name] = crossing(per_q[name], per_q["sft"])
    questions = len(per_q["sft"][1])
    seeds = len(ctx.scale.seeds)
    md = [
        "# pass@k: the SFT start against each RL arm (same start, same budget)",
        "",
        scale_note(ctx, questions, f" (a seeded subset), {n} samples each at temperature 1"),
        "",
        f"An arm's pass@k is the mean of its {seeds} seed(s)' unbiased estimates per question."
        if seeds > 1
        else "",
        "",
        *table(
            ["policy", *[f"pass@{k}" for k in ks]],
            [[name, *[cell(curve[k], 2) for k in ks]] for name, curve in curves.items()],
        ),
        "",
        "Paired differences against the SFT start (bootstrap over questions):",
        "",
        *table(["difference", "mean [95% CI]"], [[k, cell(v)] for k, v in diffs.items()]),
        "",
        "Crossing: the first k where the SFT start's pass@k reaches the arm's (None: not within k = "
        f"{ks[-1]}), with its 95% bootstrap interval over questions:",
        "",
        *table(
            ["arm", "crossing k", "95% interval", "resamples that never cross"],
            [
                [name, str(c["k"]), f"[{c['low']}, {c['high']}]", f"{c['share_never']:.2f}"]
                for name, c in crossings.items()
            ],
        ),
        "",
        "![pass@k](passk.png)",
    ]
    from benchmarks.plotting import plot_passk_curves

    plot_passk_curves(curves, out / "passk.png", f"pass@k, {questions} test questions x {n} samples (T=1)")
    figures = {"runs": runs, "ks": ks, "pass_at_k": curves, "differences": diffs, "crossing": crossings}
    results = payload(ctx, started, figures)
    write_outputs(out, results, md)
    return results
