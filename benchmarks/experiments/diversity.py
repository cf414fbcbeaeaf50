"""SFT expands, RL squeezes: query diversity across the samples of a question.

Reads the pass@k experiment's sampled episodes (no extra rollouts once ``passk`` has run),
plus those of ``sft-varied`` (the start's SFT recipe on demonstrations with varied queries: the
"SFT expands" half): per question, the distinct queries over its samples, the unique-query
ratio, the similarity of the samples' first queries and the distinct answers; paired
differences against the start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import recipes
from benchmarks.evaluation import interval
from benchmarks.experiments.common import Context, payload, run_trainings, scale_note, write_outputs
from benchmarks.experiments.passk import train_and_sample
from benchmarks.experiments.scales import varied_sft_config
from benchmarks.tables import cell, table
from searchenv.metrics import paired_bootstrap_diff

METRICS = ("distinct_queries", "unique_query_ratio", "first_query_similarity", "distinct_answers")


def question_diversity(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per question, four diversity figures over its samples.

    Distinct queries, unique-query ratio, mean pairwise similarity of the samples' first
    queries, and distinct answers.
    """
    from searchenv.metrics import mean_pairwise_similarity
    from searchenv.rewards import query_key

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["qid"], []).append(row)
    result: dict[str, dict[str, float]] = {}
    for qid, samples in sorted(groups.items()):
        queries = [q for s in samples for q in s["queries"]]
        first = [s["queries"][0] for s in samples if s["queries"]]
        answers = {str(s["answer"]).strip().lower() for s in samples if s["answer"] is not None}
        result[qid] = {
            "distinct_queries": float(len({query_key(q) for q in queries})),
            "unique_query_ratio": len({query_key(q) for q in queries}) / len(queries) if queries else 0.0,
            "first_query_similarity": mean_pairwise_similarity(first) if len(first) >= 2 else 1.0,
            "distinct_answers": float(len(answers)),
        }
    return result


def arm_diversity(ctx: Context, rows: Mapping[str, list[dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per policy (the SFT start and each arm), per question, the diversity figures.

    An arm's figures are the means over its seeds, each seed's samples measured on their own.
    """
    per_q = {"sft": question_diversity(rows["sft"])}
    for arm in ctx.scale.arms.passk:
        seeds = [question_diversity(rows[name]) for name in ctx.scale.run_names([arm])]
        per_q[arm] = {
            qid: {m: sum(seed[qid][m] for seed in seeds) / len(seeds) for m in METRICS} for qid in seeds[0]
        }
    return per_q


def run(ctx: Context) -> dict[str, Any]:
    """Measure diversity on the pass@k samples and write ``results/diversity``."""
    started = time.perf_counter()
    runs, rows = train_and_sample(ctx)
    varied = varied_sft_config(ctx.scale, ctx.runs, ctx.data)
    wall = run_trainings([varied], ctx.jobs)[Path(varied.out).name]
    runs["sft-varied"] = {"command": recipes.train_command(varied), "wall_seconds": wall}
    rows |= ctx.sampled_rows(["sft-varied"])
    per_q = arm_diversity(ctx, rows)
    per_q["sft-varied"] = question_diversity(rows["sft-varied"])
    figures = {name: {m: interval([v[m] for v in q.values()]) for m in METRICS} for name, q in per_q.items()}
    diffs = {}
    for name in (*ctx.scale.arms.passk, "sft-varied"):
        for metric in ("distinct_queries", "first_query_similarity"):
            common = sorted(per_q[name])
            a = [per_q[name][q][metric] for q in common]
            b = [per_q["sft"][q][metric] for q in common]
            diffs[f"{metric}: {name} - sft"] = paired_bootstrap_diff(a, b, seed=0).to_dict()
    out = ctx.out("diversity")
    n, questions = ctx.scale.passk_samples, len(per_q["sft"])
    md = [
        "# Query diversity across samples: the SFT start vs RL and vs SFT on varied demonstrations",
        "",
        scale_note(ctx, questions, f", {n} samples each at temperature 1"),
        "",
        "Per question over its samples: distinct normalized queries; unique-query ratio (distinct / all "
        "queries); mean pairwise similarity of the samples' first queries (1 = identical); distinct answers.",
        "",
        *table(
            ["policy", *METRICS],
            [[name, *[cell(f[m], 2) for m in METRICS]] for name, f in figures.items()],
        ),
        "",
        "Paired differences against the SFT start:",
        "",
        *table(["difference", "mean [95% CI]"], [[k, cell(v, 2)] for k, v in diffs.items()]),
        "",
        "![diversity](diversity.png)",
    ]
    from benchmarks.plotting import plot_interval_bars

    metrics = ("distinct_queries", "first_query_similarity")
    plot_interval_bars(figures, metrics, out / "diversity.png", "Query diversity")
    results = payload(ctx, started, {"runs": runs, "figures": figures, "differences": diffs})
    write_outputs(out, results, md)
    return results
