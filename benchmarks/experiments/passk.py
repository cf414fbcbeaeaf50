"""NSR's claim: negative-only RL keeps pass@k at large k where PPO and GRPO narrow it.

SFT start, PPO, GRPO, NSR and W-REINFORCE (same start, same budget), each sampled
``passk_samples`` times per test question at temperature 1; pass@k to k = 64 with intervals
over questions, and paired differences against the start at k = 1 and the largest k.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.evaluation import correct_matrix, pass_at_k_intervals
from benchmarks.experiments.common import Context, copy_metrics, payload, scale_note, write_outputs
from benchmarks.tables import cell, table
from searchenv.metrics import paired_bootstrap_diff, pass_at_k_per_question

POLICIES = ("sft", "ppo-strict", "grpo", "nsr", "wreinforce")
RL_POLICIES = POLICIES[1:]
KS = (1, 2, 4, 8, 16, 32, 64)


def train_and_sample(ctx: Context) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """Train the RL arms, then the sampled episodes of every policy (shared with ``diversity``)."""
    runs = ctx.train(RL_POLICIES)
    return runs, ctx.sampled_rows(POLICIES)


def run(ctx: Context) -> dict[str, Any]:
    """Train, sample, and write ``results/passk``."""
    started = time.perf_counter()
    runs, rows = train_and_sample(ctx)
    out = ctx.out("passk")
    copy_metrics(ctx.runs, RL_POLICIES, out)
    n = ctx.scale.passk_samples
    ks = [k for k in KS if k <= n]
    matrices = {name: correct_matrix(r) for name, r in rows.items()}
    curves = {name: pass_at_k_intervals(matrix, ks) for name, matrix in matrices.items()}
    diffs = {}
    for name in RL_POLICIES:
        for k in (1, ks[-1]):
            a = pass_at_k_per_question(matrices[name], k)
            b = pass_at_k_per_question(matrices["sft"], k)
            diffs[f"pass@{k}: {name} - sft"] = paired_bootstrap_diff(a, b, seed=0).to_dict()
    questions = len({r["qid"] for r in rows["sft"]})
    md = [
        "# pass@k: SFT vs PPO, GRPO, NSR, W-REINFORCE (same start, same budget)",
        "",
        scale_note(ctx, questions, f" (a seeded subset), {n} samples each at temperature 1"),
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
        "![pass@k](passk.png)",
    ]
    from benchmarks.plotting import plot_passk_curves

    plot_passk_curves(curves, out / "passk.png", f"pass@k, {questions} test questions x {n} samples (T=1)")
    results = payload(ctx, started, {"runs": runs, "ks": ks, "pass_at_k": curves, "differences": diffs})
    write_outputs(out, results, md)
    return results
