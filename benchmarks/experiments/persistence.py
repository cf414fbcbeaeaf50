"""ReZero's claim: the retry reward raises persistence (searches) and accuracy.

The same trainer and budget from the same SFT start with and without the retry term (the
scale's ``arms.persistence``: PPO under ``rezero``/``rezero-no-retry`` for the tiny model, GRPO
under ``rezero-strict``/``rezero-no-retry`` for SmolLM2); greedy test episodes of the start and
both arms (their seeds pooled), compared on EM, searches per episode and retry after a failed
search, with paired intervals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evaluation import paired_difference
from benchmarks.experiments.common import (
    Context,
    behaviour,
    copy_metrics,
    payload,
    scale_note,
    write_outputs,
)
from benchmarks.experiments.scales import RL_RUNS
from benchmarks.tables import cell, table


def training_trend(run: Path) -> dict[str, float] | None:
    """Mean training reward and accuracy over the first and last quarter of an RL run's steps."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = [m for m in lines if "reward_mean" in m]
    if not lines:
        return None
    quarter = max(1, len(lines) // 4)
    first, last = lines[:quarter], lines[-quarter:]
    return {
        "reward_first": float(np.mean([m["reward_mean"] for m in first])),
        "reward_last": float(np.mean([m["reward_mean"] for m in last])),
        "accuracy_first": float(np.mean([m.get("accuracy", 0.0) for m in first])),
        "accuracy_last": float(np.mean([m.get("accuracy", 0.0) for m in last])),
        "steps": len(lines),
    }


def run(ctx: Context) -> dict[str, Any]:
    """Train both arms, evaluate them greedily, write ``results/persistence``."""
    started = time.perf_counter()
    arms = ctx.scale.arms.persistence
    runs = ctx.train(arms)
    names = ctx.scale.run_names(arms)
    rows = ctx.pooled(ctx.greedy_rows(("sft", *names)), arms)
    out = ctx.out("persistence")
    copy_metrics(ctx.runs, names, out)
    figures = {n: behaviour(r) for n, r in rows.items()}

    def searches(row: Any) -> float:
        return len(row["queries"])

    first, second = arms
    diffs = {
        f"em: {first} - {second}": paired_difference(rows[first], rows[second], "correct"),
        f"searches: {first} - {second}": paired_difference(rows[first], rows[second], searches),
        **{f"em: {n} - sft": paired_difference(rows[n], rows["sft"], "correct") for n in arms},
        **{f"searches: {n} - sft": paired_difference(rows[n], rows["sft"], searches) for n in arms},
    }
    trends = {n: training_trend(ctx.runs / n) for n in names}
    trend_text = {
        n: f"{t['reward_first']:.2f} -> {t['reward_last']:.2f}" for n, t in trends.items() if t is not None
    }
    presets = {"sft": "-", **{n: RL_RUNS[n].preset for n in arms}}
    header = ["policy", "train preset", "test EM", "searches / episode", "retry after a failed search"]
    header.append("repeated-query rate")
    header.append("train reward first -> last quarter")
    policy_rows = [
        [
            n,
            presets[n],
            cell(f["em"]),
            cell(f["searches_per_episode"], 2),
            cell(f["retry_after_failed_search"], 2),
            cell(f["repeated_query_rate"]),
            "; ".join(trend_text[r] for r in ctx.scale.run_names([n]) if r in trend_text) or "-",
        ]
        for n, f in figures.items()
    ]
    md = [
        f"# Persistence: {RL_RUNS[first].preset} vs {RL_RUNS[second].preset} (same trainer, same start)",
        "",
        scale_note(ctx, figures["sft"]["n_questions"], ", greedy decoding, one episode each"),
        "",
        *table(header, policy_rows),
        "",
        "Paired differences (bootstrap over questions):",
        "",
        *table(["difference", "mean [95% CI]"], [[k, cell(v)] for k, v in diffs.items()]),
        "",
        "![persistence](persistence.png)",
    ]
    from benchmarks.plotting import plot_interval_bars

    title = "Persistence: retry reward"
    plot_interval_bars(figures, ("em", "searches_per_episode"), out / "persistence.png", title)
    results = payload(
        ctx, started, {"runs": runs, "figures": figures, "differences": diffs, "training": trends}
    )
    write_outputs(out, results, md)
    return results
