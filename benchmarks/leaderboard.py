"""Evaluate agents on held-out questions and write a leaderboard.

    python -m benchmarks.leaderboard --agents random bm25 oracle runs/sft/final \\
        --tasks factbook --split test --seeds 0 1 --samples-per-question 4 --max-questions 100 \\
        --out benchmarks/results/leaderboard --compare oracle bm25

Agents are scripted names (``agents.scripted.make_policy``) or checkpoint paths
(``agents.train.load_policy``; ``LABEL=PATH`` names one). Each agent answers every question
``samples-per-question`` times per seed, so pass@k uses ``n = seeds x samples`` samples per
question. Intervals resample *questions* (the samples of one question are not independent).

Each agent x task pair is written to ``<agent>__<task>.json`` (atomically) as soon as it
finishes, with the per-episode rows and the run configuration; a rerun with the same
configuration loads it instead of playing the episodes again, and a changed configuration
redoes it. At the end: ``results.json``, ``leaderboard.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.plots import render_markdown
from searchenv.metrics import (
    EpisodeStats,
    answer_scores,
    bootstrap_ci,
    default_ks,
    episode_stats,
    mean_components,
    paired_bootstrap_diff,
    pass_at_k_per_question,
    query_diversity_summary,
    summarize_episode_stats,
)
from tasks.records import atomic_write_lines

# Bump when the per-episode rows change shape: older pair files are then recomputed.
ROW_SCHEMA = 1
_LABEL_PATTERN = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AgentSpec:
    """An agent as named on the command line: a scripted policy or a checkpoint."""

    label: str
    kind: str  # "scripted" or "checkpoint"
    source: str  # the scripted name or the checkpoint path
    fingerprint: str = ""  # for checkpoints: size and mtime of its files, so a new save is redone


@dataclass(frozen=True)
class RunConfig:
    """Everything that changes the episodes played (and so keys the cached pair files)."""

    split: str = "test"
    seeds: tuple[int, ...] = (0,)
    samples_per_question: int = 1
    max_questions: int | None = None
    num_envs: int = 8
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Decoding of checkpoint policies (scripted agents ignore it, and their cache keys omit it).
    greedy: bool = True
    temperature: float = 1.0


# ---------------------------------------------------------------------------------------------- agents


def _checkpoint_fingerprint(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{stat.st_size}:".encode())
        digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def resolve_agent(argument: str) -> AgentSpec:
    """``NAME`` (scripted), ``PATH`` or ``LABEL=PATH`` (checkpoint) -> :class:`AgentSpec`."""
    label, _, source = argument.rpartition("=") if "=" in argument else ("", "", argument)
    path = Path(source)
    if path.exists():
        label = label or "_".join(path.resolve().parts[-2:])
        return AgentSpec(
            _LABEL_PATTERN.sub("_", label), "checkpoint", str(path), _checkpoint_fingerprint(path)
        )
    from agents.scripted import SCRIPTED_POLICIES

    if source not in SCRIPTED_POLICIES:
        raise FileNotFoundError(
            f"agent {argument!r} is neither a scripted policy {sorted(SCRIPTED_POLICIES)} nor a path"
        )
    return AgentSpec(_LABEL_PATTERN.sub("_", label or source), "scripted", source)


def load_agent(spec: AgentSpec, task: str, seed: int, greedy: bool = True, temperature: float = 1.0) -> Any:
    """Build the policy. Checkpoints import the trainers lazily so scripted runs need no torch."""
    if spec.kind == "scripted":
        from agents.scripted import make_policy

        return make_policy(spec.source, task=task, seed=seed)
    try:
        from agents.train import load_policy
    except ImportError as error:
        raise ImportError(
            f"loading checkpoint {spec.source!r} needs the agents extra: pip install -e .[agents] ({error})"
        ) from error
    return load_policy(spec.source, greedy=greedy, temperature=temperature, seed=seed)


def run_agent_episodes(
    policy: Any,
    env_kwargs: Mapping[str, Any],
    question_ids: Sequence[str],
    seed: int,
    num_envs: int,
    progress: bool,
) -> list[Any]:
    """One pass over ``question_ids`` (the seam tests patch to count or interrupt runs)."""
    from agents.rollout import run_episodes

    return run_episodes(
        policy,
        dict(env_kwargs),
        question_ids=list(question_ids),
        seed=seed,
        num_envs=num_envs,
        progress=progress,
    )


def question_ids_for(task: str, config: RunConfig) -> list[str]:
    """The split's question ids (after the env's own filters), in split order.

    ``max_questions`` keeps a fixed random subset, the same for every agent and seed: a prefix
    of the split would over-represent whatever the split happens to list first.
    """
    from searchenv import SearchQAEnv

    env = SearchQAEnv(task=task, split=config.split, **dict(config.env_kwargs))
    ids = [q.qid for q in env.questions]
    env.close()
    if config.max_questions is None or config.max_questions >= len(ids):
        return ids
    keep = np.random.default_rng(0).choice(len(ids), size=config.max_questions, replace=False)
    return [ids[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------------- pairs


def episode_row(result: Any, seed: int, sample: int) -> dict[str, Any]:
    """The per-episode figures kept in the pair file (enough to recompute every summary)."""
    record = result.record
    return {
        "qid": record.question.qid,
        "seed": seed,
        "sample": sample,
        **answer_scores(record),
        "correct": bool(result.correct),
        "reward": float(result.reward),
        "breakdown": {name: float(value) for name, value in result.breakdown.items()},
        "stats": episode_stats(record).to_dict(),
        "queries": list(record.queries),
        "wall_time": float(result.wall_time),
    }


def pair_key(agent: AgentSpec, task: str, config: RunConfig) -> str:
    settings = asdict(config)
    if agent.kind == "scripted":
        del settings["greedy"], settings["temperature"]
    payload = {"schema": ROW_SCHEMA, "agent": asdict(agent), "task": task, "config": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def pair_path(out: Path, agent: AgentSpec, task: str) -> Path:
    return out / f"{agent.label}__{_LABEL_PATTERN.sub('_', task)}.json"


def load_cached_pair(path: Path, key: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged file is recomputed, never trusted
    return cached if cached.get("key") == key else None


def evaluate_pair(agent: AgentSpec, task: str, config: RunConfig, progress: bool) -> dict[str, Any]:
    """Play every question ``samples_per_question`` times per seed; return the pair record."""
    question_ids = question_ids_for(task, config)
    planned = [qid for _ in range(config.samples_per_question) for qid in question_ids]
    env_kwargs = {"task": task, "split": config.split, **dict(config.env_kwargs)}
    rows: list[dict[str, Any]] = []
    tokens: int | None = 0
    wall_time = 0.0  # rollouts only: loading a checkpoint is not the agent's speed
    for seed in config.seeds:
        policy = load_agent(agent, task, seed, config.greedy, config.temperature)
        tokens_before = getattr(policy, "tokens_generated", None)
        started = time.perf_counter()
        results = run_agent_episodes(policy, env_kwargs, planned, seed, config.num_envs, progress)
        wall_time += time.perf_counter() - started
        if len(results) != len(planned):
            raise RuntimeError(f"{agent.label}: expected {len(planned)} episodes, got {len(results)}")
        for index, result in enumerate(results):
            if result.record.question.qid != planned[index]:
                raise RuntimeError(f"{agent.label}: episode {index} answered {result.record.question.qid!r}")
            rows.append(episode_row(result, seed, index // len(question_ids)))
        tokens_after = getattr(policy, "tokens_generated", None)
        if tokens is not None and isinstance(tokens_before, int) and isinstance(tokens_after, int):
            tokens += tokens_after - tokens_before
        else:
            tokens = None  # the policy keeps no token counter
    return {
        "agent": agent.label,
        "task": task,
        "source": agent.source,
        "kind": agent.kind,
        "question_ids": question_ids,
        "tokens_generated": tokens,
        "wall_time_s": wall_time,
        "rows": rows,
    }


def write_text(path: Path, text: str) -> None:
    """Atomic write (temp + rename), readable by others like any results file (mkstemp makes 0600)."""
    atomic_write_lines(path, [text])
    path.chmod(0o644)


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=1))


def write_pair(path: Path, record: Mapping[str, Any]) -> None:
    """Compact JSON, one episode row per line (diffable, a quarter smaller than indented)."""
    head = json.dumps({k: v for k, v in record.items() if k != "rows"})
    rows = ",\n".join(json.dumps(row, separators=(",", ":")) for row in record["rows"])
    write_text(path, f'{head[:-1]},\n"rows": [\n{rows}\n]}}')


# ---------------------------------------------------------------------------------------------- summary


def summarize_rows(
    record: Mapping[str, Any], seeds: Sequence[int], n_resamples: int = 2000
) -> dict[str, Any]:
    """Every leaderboard figure of one agent x task pair, from its per-episode rows.

    Intervals resample questions: each question contributes the mean over its samples.
    """
    rows, question_ids = record["rows"], list(record["question_ids"])
    if not rows:
        raise ValueError(f"{record['agent']} on {record['task']}: no episodes")
    samples: dict[str, list[Mapping[str, Any]]] = {qid: [] for qid in question_ids}
    for row in rows:
        samples[row["qid"]].append(row)
    n = {len(v) for v in samples.values()}
    if len(n) != 1:
        raise ValueError(f"{record['agent']} on {record['task']}: unequal samples per question {sorted(n)}")
    (n_samples,) = n

    def interval(per_question: Sequence[float]) -> dict[str, Any]:
        ci = bootstrap_ci(per_question, n_resamples=n_resamples)
        return {**ci.to_dict(), "n_questions": ci.n, "n_episodes": len(rows)}

    def per_question(field_name: str) -> list[float]:
        return [float(np.mean([r[field_name] for r in samples[qid]])) for qid in question_ids]

    correct = np.array([[r["correct"] for r in samples[qid]] for qid in question_ids], dtype=bool)
    pass_at_k = {str(k): interval(pass_at_k_per_question(correct, k).tolist()) for k in default_ks(n_samples)}
    stats = [EpisodeStats(**row["stats"]) for row in rows]
    wall = float(record["wall_time_s"])
    tokens = record.get("tokens_generated")
    return {
        "em": interval(per_question("em")),
        "f1": interval(per_question("f1")),
        "cover_em": interval(per_question("cover_em")),
        "reward": interval(per_question("reward")),
        "em_by_seed": {str(s): float(np.mean([r["em"] for r in rows if r["seed"] == s])) for s in seeds},
        "samples_per_question": n_samples,
        "pass_at_k": pass_at_k,
        "behaviour": summarize_episode_stats(stats),
        "diversity": query_diversity_summary([r["queries"] for r in rows], [r["qid"] for r in rows]),
        "reward_components": mean_components([r["breakdown"] for r in rows]),
        "tokens_generated": tokens,
        "tokens_per_episode": (tokens / len(rows)) if isinstance(tokens, int) else None,
        "wall_time_s": wall,
        "episodes_per_s": len(rows) / wall if wall > 0 else None,
    }


# ---------------------------------------------------------------------------------------------- compare


def _per_question(rows: Sequence[Mapping[str, Any]], field_name: str) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for row in rows:
        sums.setdefault(row["qid"], []).append(float(row[field_name]))
    return {qid: sum(values) / len(values) for qid, values in sums.items()}


def compare_pairs(
    rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], n_resamples: int, seed: int = 0
) -> dict[str, Any]:
    """A - B on EM, F1 and reward, paired by question, with bootstrap intervals."""
    out: dict[str, Any] = {}
    for metric in ("em", "f1", "reward"):
        per_a, per_b = _per_question(rows_a, metric), _per_question(rows_b, metric)
        shared = sorted(set(per_a) & set(per_b))
        if not shared:
            raise ValueError("the two agents share no questions")
        interval = paired_bootstrap_diff(
            [per_a[q] for q in shared], [per_b[q] for q in shared], n_resamples=n_resamples, seed=seed
        )
        out[metric] = interval.to_dict()
    return out


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.leaderboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--agents", nargs="+", required=True, help="scripted names, checkpoint paths or LABEL=PATH"
    )
    parser.add_argument("--tasks", nargs="+", default=["factbook"])
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--samples-per-question", type=int, default=1, help="n per seed; pass@k uses seeds x n"
    )
    parser.add_argument("--max-questions", type=int, default=None, help="a fixed random subset of M")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--snippet-chars", type=int, default=None)
    parser.add_argument("--hops", type=int, default=None, help="keep only questions with this hop count")
    parser.add_argument("--reward-preset", default=None)
    parser.add_argument("--backend", default=None)
    parser.add_argument(
        "--decoding",
        choices=["auto", "greedy", "sample"],
        default="auto",
        help="checkpoints: auto = greedy for one sample per question in all, else sampling",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of checkpoints")
    parser.add_argument("--bootstrap-resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/leaderboard"))
    parser.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), default=None, help="paired A - B on EM, reward"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.samples_per_question < 1 or (args.max_questions is not None and args.max_questions < 1):
        parser.error("--samples-per-question and --max-questions must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct")
    try:
        agents = [resolve_agent(a) for a in args.agents]
    except FileNotFoundError as error:
        parser.error(str(error))
    labels = [a.label for a in agents]
    if len(set(labels)) != len(labels):
        parser.error(f"agent labels collide: {labels}; name checkpoints with LABEL=PATH")
    if args.compare and not set(args.compare) <= set(labels):
        parser.error(f"--compare {args.compare} must name agents among {labels}")
    env_kwargs = {
        name: value
        for name, value in (
            ("max_turns", args.max_turns),
            ("top_k", args.top_k),
            ("snippet_chars", args.snippet_chars),
            ("hops", args.hops),
            ("reward_preset", args.reward_preset),
            ("backend", args.backend),
        )
        if value is not None
    }
    config = RunConfig(
        split=args.split,
        seeds=tuple(args.seeds),
        samples_per_question=args.samples_per_question,
        max_questions=args.max_questions,
        num_envs=args.num_envs,
        env_kwargs=env_kwargs,
        greedy=args.decoding == "greedy"
        or (args.decoding == "auto" and len(args.seeds) * args.samples_per_question == 1),
        temperature=args.temperature,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    pairs: list[dict[str, Any]] = []
    rows_by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in args.tasks:
        for agent in agents:
            path, key = pair_path(out, agent, task), pair_key(agent, task, config)
            record = load_cached_pair(path, key)
            status = "cached"
            if record is None:
                status = "ran"
                record = evaluate_pair(agent, task, config, progress)
                record["key"], record["config"] = key, asdict(config)
                write_pair(path, record)
            summary = summarize_rows(record, config.seeds, n_resamples=args.bootstrap_resamples)
            rows_by_pair[(agent.label, task)] = record["rows"]
            pairs.append({"agent": agent.label, "task": task, "file": path.name, "summary": summary})
            print(f"[leaderboard] {agent.label} on {task}: {status} ({path})", file=sys.stderr)

    comparisons = []
    if args.compare:
        first, second = args.compare
        for task in args.tasks:
            diff = compare_pairs(
                rows_by_pair[(first, task)],
                rows_by_pair[(second, task)],
                n_resamples=args.bootstrap_resamples,
            )
            comparisons.append({"a": first, "b": second, "task": task, "diff": diff})

    plot_paths: list[str] = []
    if not args.no_plots:
        from benchmarks.plots import plot_pass_at_k, plot_reward_components

        plot_paths = [
            str(plot_pass_at_k(pairs, out / "passk.png")),
            str(plot_reward_components(pairs, out / "rewards.png")),
        ]

    results = {"config": asdict(config), "pairs": pairs, "comparisons": comparisons, "plots": plot_paths}
    write_json(out / "results.json", results)
    markdown = render_markdown(pairs, comparisons, config)
    write_text(out / "leaderboard.md", markdown)
    print(markdown)
    print(f"results: {out / 'results.json'}\ntable:   {out / 'leaderboard.md'}")
    for plot in plot_paths:
        print(f"plot:    {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
