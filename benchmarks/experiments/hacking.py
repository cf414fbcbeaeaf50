"""Does the strict retry term stop repeat-query inflation? (a) scripted probes, (b) RL.

(a) The honest BM25 heuristic against the ``repeat-query`` and ``spam-search`` probes on test
questions of every kind and hop count, scored under ``rezero`` and ``rezero-strict``.
(b) The same RL trainer under each preset from the same SFT start (the scale's
``arms.hacking``: PPO for the tiny model, GRPO for SmolLM2); greedy test episodes, seeds pooled.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.evaluation import RunConfig, paired_difference, resolve_agent
from benchmarks.experiments.common import (
    Context,
    behaviour,
    copy_metrics,
    payload,
    repeat_share,
    scale_note,
    write_outputs,
)
from benchmarks.tables import cell, table

PROBES = ("bm25", "repeat-query", "spam-search")
PRESETS = ("rezero", "rezero-strict")


def probe_rows(ctx: Context) -> dict[str, list[dict]]:
    """Rows of every probe under every preset, keyed ``preset/probe``.

    One deterministic episode per question, max_turns 6, on a seeded subset of the whole test
    split (every kind and hop count).
    """
    agents = [resolve_agent(probe) for probe in PROBES]
    rows = {}
    for preset in PRESETS:
        env = {"reward_preset": preset, "max_turns": 6, "top_k": 3}
        config = RunConfig(split="test", max_questions=ctx.scale.probe_questions, num_envs=8, env_kwargs=env)
        for label, probe in ctx.rows(f"probe-{preset}", agents, config).items():
            rows[f"{preset}/{label}"] = probe
    return rows


def run(ctx: Context) -> dict[str, Any]:
    """Run the probes, train both arms, evaluate them greedily, write ``results/hacking``."""
    started = time.perf_counter()
    probed = probe_rows(ctx)
    probes = {name: behaviour(r) for name, r in probed.items()}
    probe_diffs = {
        f"reward {preset}: {probe} - bm25": paired_difference(
            probed[f"{preset}/{probe}"], probed[f"{preset}/bm25"], "reward"
        )
        for preset in PRESETS
        for probe in PROBES[1:]
    }
    arms = ctx.scale.arms.hacking
    runs = ctx.train(arms)
    names = ctx.scale.run_names(arms)
    rows = ctx.pooled(ctx.greedy_rows(("sft", *names)), arms)
    figures = {n: behaviour(r) for n, r in rows.items()}
    lenient, strict = arms

    def searches(row: Any) -> float:
        return len(row["queries"])

    rl_diffs = {
        f"repeated-query share: {lenient} - {strict}": paired_difference(
            rows[lenient], rows[strict], repeat_share
        ),
        f"searches: {lenient} - {strict}": paired_difference(rows[lenient], rows[strict], searches),
        f"em: {lenient} - {strict}": paired_difference(rows[lenient], rows[strict], "correct"),
        **{
            f"repeated-query share: {n} - sft": paired_difference(rows[n], rows["sft"], repeat_share)
            for n in arms
        },
    }
    out = ctx.out("hacking")
    copy_metrics(ctx.runs, names, out)
    n_probe_questions = probes[f"{PRESETS[0]}/bm25"]["n_questions"]
    probe_header = ["preset", "agent", "reward", "EM", "searches / episode", "repeated-query rate"]
    probe_table = [
        [
            *key.split("/"),
            cell(f["reward"], 2),
            cell(f["em"], 2),
            cell(f["searches_per_episode"], 2),
            cell(f["repeated_query_rate"], 2),
            cell(f["retry_component"], 2),
        ]
        for key, f in probes.items()
    ]
    rl_header = [
        "policy",
        "test EM",
        "searches / episode",
        "repeated-query rate",
        "repeated share per question",
    ]
    rl_table = [
        [
            n,
            cell(f["em"]),
            cell(f["searches_per_episode"], 2),
            cell(f["repeated_query_rate"]),
            cell(f["repeated_query_rate_per_question"]),
        ]
        for n, f in figures.items()
    ]
    md = [
        "# Persistence under hacking: rezero vs rezero-strict",
        "",
        f"(a) Scripted probes against the honest BM25 heuristic on {n_probe_questions} test questions "
        "(all kinds and hops), max_turns 6, one deterministic episode each.",
        "",
        *table([*probe_header, "retry component"], probe_table),
        "",
        *table(["paired difference", "mean [95% CI]"], [[k, cell(v, 2)] for k, v in probe_diffs.items()]),
        "",
        "(b) " + scale_note(ctx, figures["sft"]["n_questions"], ", greedy decoding"),
        "",
        *table(rl_header, rl_table),
        "",
        *table(["paired difference", "mean [95% CI]"], [[k, cell(v)] for k, v in rl_diffs.items()]),
        "",
        "![hacking](hacking.png)",
    ]
    from benchmarks.plotting import plot_hacking

    plot_hacking(probes, figures, PROBES, PRESETS, out / "hacking.png")
    probe_figures = {"probe_questions": n_probe_questions, "probes": probes, "probe_differences": probe_diffs}
    rl_figures = {"runs": runs, "figures": figures, "rl_differences": rl_diffs}
    results = payload(ctx, started, probe_figures | rl_figures)
    write_outputs(out, results, md)
    return results
