"""Do the baseline agents learn on a CPU? Tiny-model SFT, then NSR and PPO from its checkpoint.

    python -m benchmarks.bench_learning                # the full run: 15.6 min measured (1 thread)
    python -m benchmarks.bench_learning --quick        # a plumbing check (~3 min)

Phases, each one a plain ``agents.train`` run (so every number here can be reproduced with the
CLI, the commands are written to the report):

1. SFT of the tiny model on oracle demonstrations of single-hop training questions, with a
   dev-EM curve along the way; then greedy EM on every single-hop *test* question.
2. NSR and PPO, each started from the SFT checkpoint, on single-hop training questions.
3. Mean training reward before and after RL, measured on the same probe: a fixed set of
   training questions, sampled (temperature 1) with the same seeds from the SFT checkpoint and
   from each RL checkpoint; 95% bootstrap intervals over questions, and a paired bootstrap of
   the difference. The per-step training reward of each run is plotted too.

Writes ``results.json``, ``results.md``, each run's ``metrics.jsonl`` and PNG figures to
``--out`` (default ``benchmarks/results/learning``); the runs themselves go to ``--runs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import checkpoint as ckpt
from agents.algos import resolve
from agents.config import TrainConfig
from agents.evaluate import evaluate_checkpoint
from agents.train import train
from benchmarks import recipes
from benchmarks.evaluation import Evaluation, RunConfig, interval, resolve_agent, run_evaluations
from benchmarks.tables import cell
from searchenv.metrics import paired_bootstrap_diff
from tasks.storage import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the learning benchmark (defaults: the full run)."""

    out: str = "benchmarks/results/learning"
    """Where results, logs and figures go."""
    runs: str = "runs/bench_learning"
    """Where the training runs (checkpoints) go."""
    threads: int = 1
    """torch threads (1: on a shared 2-core machine, 2 threads were slower, see NOTES)."""
    seed: int = 0
    """Seed of every run."""
    sft_steps: int = 240
    """SFT steps (batches of demonstrations)."""
    sft_batch_size: int = 8
    """Demonstrations per SFT step."""
    sft_lr: float = 3e-3
    """Peak SFT learning rate (warmup then cosine)."""
    sft_eval_points: int = 4
    """Dev-EM evaluations along the SFT run."""
    rl_steps: int = 15
    """Steps of each RL run."""
    rl_episodes: int = 16
    """Episodes per RL step."""
    rl_lr: float = 1e-4
    """RL learning rate."""
    probe_questions: int = 64
    """Training questions in the before/after reward probe."""
    test_questions: int | None = None
    """Single-hop test questions evaluated (None: all)."""
    max_turns: int = 4
    """Env turn budget."""
    top_k: int = 3
    """Hits per search."""
    snippet_chars: int = 200
    """Snippet length per hit."""
    reuse: bool = False
    """Keep finished runs from a previous invocation instead of retraining."""
    progress: bool = True
    """Progress bars."""


QUICK: dict[str, Any] = {
    "sft_steps": 12,
    "sft_eval_points": 1,
    "rl_steps": 2,
    "rl_episodes": 8,
    "probe_questions": 8,
    "test_questions": 16,
    "out": "runs/bench_learning_quick/results",
    "runs": "runs/bench_learning_quick",
}


def _env(bench: BenchConfig) -> dict[str, Any]:
    """The benchmark's sizes as overrides of the tiny-model recipes."""
    return {
        "seed": bench.seed,
        "max_turns": bench.max_turns,
        "top_k": bench.top_k,
        "snippet_chars": bench.snippet_chars,
        "threads": bench.threads,
        "progress": bench.progress,
    }


def _run(cfg: TrainConfig, reuse: bool) -> tuple[Path, float]:
    """Train (or reuse a finished run); return the run folder and the training wall time."""
    out = Path(cfg.out)
    latest = ckpt.latest_checkpoint(out)
    if reuse and latest is not None and ckpt.read_state(latest)["step"] == cfg.steps:
        return out, float(ckpt.read_state(latest).get("wall_time", float("nan")))
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    train(cfg)
    return out, time.perf_counter() - started


def _probe(run: Path, label: str, bench: BenchConfig, sft_cfg: TrainConfig) -> list[float]:
    """Rewards of sampled (temperature 1) episodes on the probe's fixed questions and seed.

    The probe draws its own subset of single-hop training questions (seed + 1), the same for
    every checkpoint; its episodes are kept under ``<runs>/probe`` like any evaluation.
    """
    checkpoint = ckpt.latest_checkpoint(run)
    config = RunConfig(
        split="train",
        seeds=(bench.seed,),
        max_questions=bench.probe_questions,
        num_envs=16,
        env_kwargs={k: v for k, v in sft_cfg.env_kwargs("train").items() if k not in ("task", "split")},
        greedy=False,
        question_seed=bench.seed + 1,
    )
    evaluation = Evaluation(
        resolve_agent(f"{label}={checkpoint}"), sft_cfg.task, config, Path(bench.runs) / "probe"
    )
    (record,) = run_evaluations([evaluation], progress=bench.progress)
    return [row["reward"] for row in record["rows"]]


def _first_last(records: Sequence[Mapping[str, Any]], window: int, seed: int) -> dict[str, Any]:
    """Episode rewards of the first and the last ``window`` training steps.

    Bootstrap intervals over episodes, paired by nothing (the steps asked different questions).
    """
    window = max(1, min(window, len(records) // 2 or 1))
    first = [x for r in records[:window] for x in r["episode_rewards"]]
    last = [x for r in records[-window:] for x in r["episode_rewards"]]
    accuracy_first = [float(r["accuracy"]) for r in records[:window]]
    accuracy_last = [float(r["accuracy"]) for r in records[-window:]]
    return {
        "window_steps": window,
        "reward_first": interval(first, seed=seed),
        "reward_last": interval(last, seed=seed),
        "accuracy_first": float(np.mean(accuracy_first)),
        "accuracy_last": float(np.mean(accuracy_last)),
    }


def run(bench: BenchConfig) -> dict[str, Any]:
    """Every phase, then the outputs; returns the report written to ``results.json``."""
    import torch

    torch.set_num_threads(bench.threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    runs = Path(bench.runs)
    report: dict[str, Any] = {"config": dataclasses.asdict(bench), "phases": {}}

    # 1. SFT on oracle demonstrations, dev EM along the way.
    eval_every = max(1, bench.sft_steps // max(1, bench.sft_eval_points))
    sft_cfg = recipes.tiny_sft(
        runs / "sft",
        steps=bench.sft_steps,
        lr=bench.sft_lr,
        warmup_steps=min(20, bench.sft_steps // 10),
        sft_batch_size=bench.sft_batch_size,
        eval_every=eval_every,
        eval_episodes=48,
        **_env(bench),
    )
    sft_run, sft_time = _run(sft_cfg, bench.reuse)
    sft_records = ckpt.read_metrics(sft_run / "metrics.jsonl")
    test = evaluate_checkpoint(sft_run, "test", hops=1, episodes=bench.test_questions, num_envs=16,
                               seed=bench.seed, progress=bench.progress)  # fmt: skip
    report["phases"]["sft"] = {
        "command": recipes.train_command(sft_cfg),
        "train_seconds": sft_time,
        "train_cpu_seconds": sum(r["step_cpu_time"] for r in sft_records),
        "demonstrations": "oracle, every single-hop training question",
        "final_loss": sft_records[-1]["loss"],
        "dev_em_curve": [(r["step"], r["eval_em"]) for r in sft_records if "eval_em" in r],
        "test": test,
    }

    # 2-3. NSR and PPO from the SFT checkpoint; the reward probe before and after.
    before = _probe(sft_run, "sft", bench, sft_cfg)
    report["probe"] = {"questions": len(before), "before": interval(before, seed=bench.seed)}
    for algo in ("nsr", "ppo"):
        cfg = recipes.tiny_rl(
            runs / algo,
            algo,
            sft_run,
            steps=bench.rl_steps,
            lr=bench.rl_lr,
            episodes_per_step=bench.rl_episodes,
            **_env(bench),
        )
        run_dir, seconds = _run(cfg, bench.reuse)
        records = ckpt.read_metrics(run_dir / "metrics.jsonl")
        after = _probe(run_dir, algo, bench, sft_cfg)
        report["phases"][algo] = {
            "command": recipes.train_command(resolve(cfg)),
            "train_seconds": seconds,
            "train_cpu_seconds": sum(r["step_cpu_time"] for r in records),
            "training": _first_last(records, max(1, bench.rl_steps // 4), bench.seed),
            "probe_after": interval(after, seed=bench.seed),
            "probe_change": paired_bootstrap_diff(after, before, seed=bench.seed).to_dict(),
        }
    report["total_seconds"] = time.perf_counter() - started
    report["total_cpu_seconds"] = time.process_time() - cpu_started
    write_outputs(report, bench, runs)
    return report


# --- outputs ---------------------------------------------------------------------------------


def render_markdown(report: Mapping[str, Any]) -> str:
    """``results.md``: the SFT phase, the RL table with the probe, and the commands."""
    sft = report["phases"]["sft"]
    test = sft["test"]
    lines = [
        "# Learning on CPU: tiny-model SFT, then NSR and PPO",
        "",
        f"Total wall time {report['total_seconds'] / 60:.1f} min, CPU time "
        f"{report['total_cpu_seconds'] / 60:.1f} min ({report['config']['threads']} torch threads; "
        "on a shared machine CPU time is the steadier figure). Single-hop factbook questions, reward preset "
        "rezero-strict. Intervals are 95% percentile bootstraps.",
        "",
        "## SFT on oracle demonstrations",
        "",
        f"- training: {sft['train_seconds'] / 60:.1f} min wall (with set-up), "
        f"{sft['train_cpu_seconds'] / 60:.1f} min CPU in steps; final loss {sft['final_loss']:.3f}",
        f"- dev EM along the run (step, EM): {', '.join(f'({s}, {e:.3f})' for s, e in sft['dev_em_curve'])}",
        f"- **test EM {test['em']:.3f} [{test['em_ci95'][0]:.3f}, {test['em_ci95'][1]:.3f}]** "
        f"on n = {test['n']} single-hop test questions (greedy); target 0.5: "
        f"{'reached' if test['em'] >= 0.5 else 'NOT reached'}",
        f"- command: `{sft['command']}`",
        "",
        "## RL from the SFT checkpoint",
        "",
        f"Probe: {report['probe']['questions']} fixed training questions, one sampled episode each, "
        f"same seeds before and after. Reward before (SFT checkpoint): {cell(report['probe']['before'])}.",
        "",
        "| run | train min | probe reward after | change (paired) | training reward, first -> last quarter |"
        " training accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for algo in ("nsr", "ppo"):
        phase = report["phases"][algo]
        training = phase["training"]
        lines.append(
            f"| {algo} | {phase['train_seconds'] / 60:.1f} | {cell(phase['probe_after'])} "
            f"| {cell(phase['probe_change'])} | {cell(training['reward_first'])} -> "
            f"{cell(training['reward_last'])} "
            f"| {training['accuracy_first']:.3f} -> {training['accuracy_last']:.3f} |"
        )
    longer = report.get("longer_sft")
    if longer:
        test = longer["test"]
        em = f"{test['em']:.3f} [{test['em_ci95'][0]:.3f}, {test['em_ci95'][1]:.3f}]"
        curve = ", ".join(f"({s}, {e:.3f})" for s, e in longer["dev_em_curve"])
        lines += [
            "",
            "## Beyond the budget: a longer SFT run",
            "",
            f"{longer['note']} After {longer['steps']} steps ({longer['epochs']:.1f} epochs of "
            f"demonstrations, loss {longer['loss']:.3f}): test EM **{em}**, F1 {test['f1']:.3f} "
            f"(n = {test['n']}). Dev EM (step, EM): {curve}. Command: `{longer['command']}`",
        ]
    lines += ["", "Commands:", ""]
    lines += [f"- {algo}: `{report['phases'][algo]['command']}`" for algo in ("nsr", "ppo")]
    lines += ["", "Figures: `sft.png` (loss and dev EM), `rl_reward.png` (per-step training reward), "
              "`probe.png` (reward before/after).", ""]  # fmt: skip
    return "\n".join(lines)


def plot_figures(report: Mapping[str, Any], out: Path) -> None:
    """The three figures, from ``results.json`` and the metrics copies in ``out`` only."""
    from benchmarks.plotting import plot_probe, plot_rl_reward, plot_sft

    phases = report["phases"]
    plot_sft(ckpt.read_metrics(out / "sft_metrics.jsonl"), phases["sft"], out / "sft.png")
    rl = {algo: ckpt.read_metrics(out / f"{algo}_metrics.jsonl") for algo in ("nsr", "ppo")}
    plot_rl_reward(rl, out / "rl_reward.png")
    bars = {"SFT (before)": report["probe"]["before"], "NSR": phases["nsr"]["probe_after"]}
    plot_probe({**bars, "PPO": phases["ppo"]["probe_after"]}, report["probe"]["questions"], out / "probe.png")


def write_outputs(report: Mapping[str, Any], bench: BenchConfig, runs: Path) -> None:
    """results.json, results.md, each run's metrics log and the figures, in ``bench.out``."""
    out = Path(bench.out)
    for name in ("sft", "nsr", "ppo"):
        atomic_write_text(out / f"{name}_metrics.jsonl", (runs / name / "metrics.jsonl").read_text())
    atomic_write_json(out / "results.json", report, indent=2, sort_keys=False)
    atomic_write_text(out / "results.md", render_markdown(report) + "\n")
    plot_figures(report, out)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: every ``BenchConfig`` field as an option, plus --quick and --plots-only."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = BenchConfig()
    for field in dataclasses.fields(BenchConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            kind = type(field.default) if field.default is not None else int
            parser.add_argument(flag, type=kind, default=getattr(defaults, field.name))
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a plumbing check, not a measurement"
    )
    parser.add_argument("--plots-only", action="store_true", help="redraw figures and results.md from --out")
    args = vars(parser.parse_args(argv))
    quick, plots_only = args.pop("quick"), args.pop("plots_only")
    bench = BenchConfig(**args)
    if plots_only:
        out = Path(bench.out)
        report = json.loads((out / "results.json").read_text())
        atomic_write_text(out / "results.md", render_markdown(report) + "\n")
        plot_figures(report, out)
        return 0
    if quick:
        # The quick sizes, and its own folders unless --out or --runs name others.
        sizes = {k: v for k, v in QUICK.items() if getattr(bench, k) == getattr(defaults, k)}
        bench = dataclasses.replace(bench, **sizes)
    report = run(bench)
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
