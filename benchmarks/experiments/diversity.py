"""SFT expands, RL squeezes: query diversity across the samples of a question.

Reads the pass@k experiment's sampled episodes (no extra rollouts once ``passk`` has run):
per question, the distinct queries over its samples, the unique-query ratio, the similarity of
the samples' first queries and the distinct answers; paired differences against the start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.evaluation import interval
from benchmarks.experiments.common import Context, payload, scale_note, write_outputs
from benchmarks.experiments.passk import RL_POLICIES, train_and_sample
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


def run(ctx: Context) -> dict[str, Any]:
    """Measure diversity on the pass@k samples and write ``results/diversity``."""
    started = time.perf_counter()
    runs, rows = train_and_sample(ctx)
    per_q = {name: question_diversity(r) for name, r in rows.items()}
    figures = {name: {m: interval([v[m] for v in q.values()]) for m in METRICS} for name, q in per_q.items()}
    diffs = {}
    for name in RL_POLICIES:
        for metric in ("distinct_queries", "first_query_similarity"):
            common = sorted(per_q[name])
            a = [per_q[name][q][metric] for q in common]
            b = [per_q["sft"][q][metric] for q in common]
            diffs[f"{metric}: {name} - sft"] = paired_bootstrap_diff(a, b, seed=0).to_dict()
    out = ctx.out("diversity")
    n, questions = ctx.scale.passk_samples, len(per_q["sft"])
    md = [
        "# Query diversity across samples: SFT vs RL (the pass@k samples, no extra rollouts)",
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
