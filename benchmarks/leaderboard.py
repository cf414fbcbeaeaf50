r"""Evaluate agents on held-out questions and write a leaderboard.

    python -m benchmarks.leaderboard --agents random bm25 oracle runs/sft/final \\
        --tasks factbook --split test --seeds 0 1 --samples-per-question 4 --max-questions 100 \\
        --out benchmarks/results/leaderboard --compare oracle bm25

Agents are scripted names (``agents.scripted.make_policy``) or checkpoint paths
(``agents.weights.load_policy``; ``LABEL=PATH`` names one). Each agent answers every question
``samples-per-question`` times per seed, so pass@k uses ``n = seeds x samples`` samples per
question. Intervals resample *questions* (the samples of one question are not independent).

Episodes are played and cached by ``benchmarks.evaluation``: each agent x task pair is written
to ``<agent>__<task>.json`` as soon as it finishes, and a rerun with the same configuration
reads it instead of playing again. At the end: ``results.json``, ``leaderboard.md`` and PNG plots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evaluation import (
    Evaluation,
    Row,
    RunConfig,
    correct_matrix,
    interval,
    paired_difference,
    pass_at_k_intervals,
    per_question,
    resolve_agent,
    run_evaluations,
)
from benchmarks.leaderboard_cli import build_parser, check_tasks, env_default, task_configs
from benchmarks.tables import cell, table
from searchenv.cli_errors import reports_errors
from searchenv.metrics import (
    EpisodeStats,
    default_ks,
    mean_components,
    query_diversity_summary,
    summarize_episode_stats,
)
from tasks.storage import atomic_write_json, atomic_write_text

Pair = Mapping[str, Any]
ENV_OPTIONS = (
    *("max_turns", "top_k", "snippet_chars", "read_chars", "prompt", "hops", "reward_preset", "backend"),
)


def compare_pairs(
    rows_a: Sequence[Row], rows_b: Sequence[Row], n_resamples: int, seed: int = 0
) -> dict[str, Any]:
    """A - B on EM, F1 and reward, paired by question, with bootstrap intervals."""
    return {
        metric: paired_difference(rows_a, rows_b, metric, n_resamples=n_resamples, seed=seed)
        for metric in ("em", "f1", "reward")
    }


def summarize_rows(
    record: Mapping[str, Any], seeds: Sequence[int], n_resamples: int = 2000
) -> dict[str, Any]:
    """Every leaderboard figure of one evaluation record, from its per-episode rows.

    Raises:
        ValueError: the record has no rows, or its questions have unequal numbers of samples.
    """
    rows, question_ids = record["rows"], list(record["question_ids"])
    if not rows:
        raise ValueError(f"{record['agent']} on {record['task']}: no episodes")
    counts = {qid: 0 for qid in question_ids}
    for row in rows:
        counts[row["qid"]] += 1
    sizes = sorted(set(counts.values()))
    if len(sizes) != 1:
        raise ValueError(f"{record['agent']} on {record['task']}: unequal samples per question {sizes}")
    (n_samples,) = sizes

    def figure(value: str | Callable[[Row], float]) -> dict[str, Any]:
        ci = interval(list(per_question(rows, value, question_ids).values()), n_resamples=n_resamples)
        return {**ci, "n_questions": ci["n"], "n_episodes": len(rows)}

    matrix = correct_matrix(rows, question_ids)
    pass_at_k = {
        str(k): {**ci, "n_questions": ci["n"], "n_episodes": len(rows)}
        for k, ci in pass_at_k_intervals(matrix, default_ks(n_samples), n_resamples).items()
    }
    tokens = [row.get("generated_tokens") for row in rows]
    total_tokens = sum(tokens) if all(isinstance(t, int) for t in tokens) else None
    wall = float(record["wall_time_s"])
    return {
        "em": figure("em"),
        "f1": figure("f1"),
        "cover_em": figure("cover_em"),
        "reward": figure("reward"),
        "em_by_seed": {str(s): float(np.mean([r["em"] for r in rows if r["seed"] == s])) for s in seeds},
        "samples_per_question": n_samples,
        "pass_at_k": pass_at_k,
        "behaviour": summarize_episode_stats([EpisodeStats(**row["stats"]) for row in rows]),
        "diversity": query_diversity_summary([r["queries"] for r in rows], [r["qid"] for r in rows]),
        "reward_components": mean_components([r["breakdown"] for r in rows]),
        "tokens_generated": total_tokens,
        "tokens_per_episode": total_tokens / len(rows) if total_tokens is not None else None,
        "wall_time_s": wall,
        "episodes_per_s": len(rows) / wall if wall > 0 else None,
    }


def render_markdown(
    pairs: Sequence[Pair],
    comparisons: Sequence[Mapping[str, Any]],
    config: RunConfig,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The leaderboard as Markdown: per task a main table, the pass@k curve and reward components.

    ``datasets`` (label -> a jsonl task's arguments) adds the files each jsonl table was played on.
    """
    preset = config.env_kwargs.get("reward_preset") or env_default("reward_preset")
    lines = [
        "# SearchQA leaderboard",
        "",
        f"Split `{config.split}`; seeds {list(config.seeds)}; {config.samples_per_question} sample(s) per "
        "question per seed; "
        f"env arguments {dict(config.env_kwargs) or 'default'}. "
        "Intervals are 95% percentile bootstraps over questions (each question counts once, its samples "
        "averaged). Retry = share of episodes with a failed search (no gold passage in its hits) that "
        "searched again; format err = invalid turns / turns; unique q = distinct / issued queries per "
        "episode; sim = mean pairwise query similarity within an episode; distinct q = distinct queries "
        "over all samples of a question; tokens/ep = tokens an LM agent generated per episode.",
    ]
    for task in dict.fromkeys(p["task"] for p in pairs):
        task_pairs = [p for p in pairs if p["task"] == task]
        lines += ["", f"## {task}", ""]
        if datasets and task in datasets:
            lines += [_dataset_line(datasets[task]), ""]
        header = ["agent", "EM", "F1", "cover-EM", f"reward ({preset})", "pass@K", "searches/ep", "reads/ep"]
        header += ["retry"]
        header += ["format err", "unique q", "sim", "distinct q", "tokens/ep", "wall s", "n"]
        lines += table(header, [_main_row(p) for p in task_pairs])

        all_ks = list(dict.fromkeys(k for p in task_pairs for k in p["summary"]["pass_at_k"]))
        lines += ["", "pass@k (unbiased estimator, n = samples per question over all seeds):", ""]
        passk_rows = [
            [p["agent"], *(cell(p["summary"]["pass_at_k"].get(k, {}).get("mean")) for k in all_ks)]
            for p in task_pairs
        ]
        lines += table(["agent", *(f"k={k}" for k in all_ks)], passk_rows)

        components = list(dict.fromkeys(c for p in task_pairs for c in p["summary"]["reward_components"]))
        lines += ["", "Mean reward components (each in [0, 1], before preset weights):", ""]
        component_rows = [
            [p["agent"], *(cell(p["summary"]["reward_components"].get(c)) for c in components)]
            for p in task_pairs
        ]
        lines += table(["agent", *components], component_rows)

    if comparisons:
        lines += ["", "## Paired comparisons (A - B, bootstrap over shared questions)", ""]
        rows = [
            [f"{c['a']} - {c['b']}", c["task"]]
            + [
                cell(c["diff"][m]) + (" *" if _excludes_zero(c["diff"][m]) else "")
                for m in ("em", "f1", "reward")
            ]
            + [str(c["diff"]["em"]["n"])]
            for c in comparisons
        ]
        lines += table(["A - B", "task", "ΔEM", "ΔF1", "Δreward", "questions"], rows)
        lines += ["", "`*`: the 95% interval excludes 0."]
    return "\n".join(lines) + "\n"


def _dataset_line(task_kwargs: Mapping[str, Any]) -> str:
    splits = ", ".join(f"{split} `{path}`" for split, path in task_kwargs.get("splits", {}).items())
    evidence = task_kwargs.get("evidence_field") or "the recognized layouts"
    corpus = task_kwargs.get("corpus_path")
    return f"jsonl dataset: corpus `{corpus}`; questions {splits}; evidence from {evidence}."


def _main_row(pair: Pair) -> list[str]:
    s = pair["summary"]
    last_k = list(s["pass_at_k"])[-1]
    behaviour, diversity = s["behaviour"], s["diversity"]
    return [
        pair["agent"],
        cell(s["em"]),
        cell(s["f1"]),
        cell(s["cover_em"]),
        cell(s["reward"]),
        f"{s['pass_at_k'][last_k]['mean']:.3f} (k={last_k})",
        cell(behaviour["searches_per_episode"], 2),
        cell(behaviour["reads_per_episode"], 2),
        cell(behaviour["retry_after_failed_search"], 2),
        cell(behaviour["format_error_rate"], 3),
        cell(diversity["unique_query_ratio"], 2),
        cell(diversity["mean_pairwise_similarity"], 2),
        cell(diversity["distinct_queries_per_question"], 2),
        cell(s["tokens_per_episode"], 1),
        cell(s["wall_time_s"], 1),
        f"{s['em']['n_questions']} q / {s['em']['n_episodes']} ep",
    ]


def _excludes_zero(figure: Mapping[str, Any]) -> bool:
    return figure["low"] > 0 or figure["high"] < 0


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate (or read back) every agent x task pair, then write the results, table and plots."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.samples_per_question < 1 or (args.max_questions is not None and args.max_questions < 1):
        parser.error("--samples-per-question and --max-questions must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct")
    if args.ray_actors < 0:
        parser.error("--ray-actors must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    try:
        agents = [resolve_agent(a) for a in args.agents]
    except FileNotFoundError as error:
        parser.error(str(error))
    labels = [a.label for a in agents]
    if len(set(labels)) != len(labels):
        parser.error(f"agent labels collide: {labels}; name checkpoints with LABEL=PATH")
    for pair in args.compare or ():
        if not set(pair) <= set(labels):
            parser.error(f"--compare {' '.join(pair)} must name agents among {labels}")
    config = RunConfig(
        split=args.split,
        seeds=tuple(args.seeds),
        samples_per_question=args.samples_per_question,
        max_questions=args.max_questions,
        num_envs=args.num_envs,
        env_kwargs={name: getattr(args, name) for name in ENV_OPTIONS if getattr(args, name) is not None},
        greedy=args.decoding == "greedy"
        or (args.decoding == "auto" and len(args.seeds) * args.samples_per_question == 1),
        temperature=args.temperature,
        device=args.device,
        ray_actors=args.ray_actors,
    )
    out: Path = args.out
    configs = task_configs(parser, args, config)
    check_tasks(args, configs)
    out.mkdir(parents=True, exist_ok=True)

    evaluations = [Evaluation(agent, task, configs[task], out) for task in args.tasks for agent in agents]
    records = run_evaluations(evaluations, progress=not args.no_progress)
    pairs = [
        {
            "agent": e.agent.label,
            "task": e.task_label,
            "file": e.path.name,
            "summary": summarize_rows(record, config.seeds, n_resamples=args.bootstrap_resamples),
        }
        for e, record in zip(evaluations, records, strict=True)
    ]
    rows = {
        (e.agent.label, e.task_label): record["rows"] for e, record in zip(evaluations, records, strict=True)
    }
    comparisons = []
    for first, second in args.compare or ():
        for task in dict.fromkeys(e.task_label for e in evaluations):
            diff = compare_pairs(
                rows[(first, task)], rows[(second, task)], n_resamples=args.bootstrap_resamples
            )
            comparisons.append({"a": first, "b": second, "task": task, "diff": diff})

    plot_paths: list[str] = []
    if not args.no_plots:
        from benchmarks.plotting import plot_pass_at_k, plot_reward_components

        plot_paths = [
            str(plot_pass_at_k(pairs, out / "passk.png")),
            str(plot_reward_components(pairs, out / "rewards.png")),
        ]

    datasets = {e.task_label: e.task_kwargs for e in evaluations if e.task_kwargs}
    results = {
        "config": asdict(config),
        "datasets": datasets,
        "pairs": pairs,
        "comparisons": comparisons,
        "plots": plot_paths,
    }
    atomic_write_json(out / "results.json", results, indent=1, sort_keys=False)
    markdown = render_markdown(pairs, comparisons, config, datasets)
    atomic_write_text(out / "leaderboard.md", markdown)
    print(markdown)
    print(f"results: {out / 'results.json'}\ntable:   {out / 'leaderboard.md'}")
    for plot in plot_paths:
        print(f"plot:    {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
