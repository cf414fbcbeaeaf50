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
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import checkpoint as ckpt
from agents import sft_data
from agents.train import TrainConfig, evaluate_checkpoint, load_policy, train
from searchenv.metrics import bootstrap_ci, paired_bootstrap_diff
from tasks.records import atomic_write_lines


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


QUICK = {
    "sft_steps": 12,
    "sft_eval_points": 1,
    "rl_steps": 2,
    "rl_episodes": 8,
    "probe_questions": 8,
    "test_questions": 16,
    "out": "runs/bench_learning_quick/results",
    "runs": "runs/bench_learning_quick",
}


def _base_config(bench: BenchConfig, **overrides: Any) -> TrainConfig:
    return TrainConfig(
        model="tiny",
        task="factbook",
        hops=1,
        seed=bench.seed,
        max_turns=bench.max_turns,
        top_k=bench.top_k,
        snippet_chars=bench.snippet_chars,
        threads=bench.threads,
        progress=bench.progress,
        num_envs=16,
        max_new_tokens=32,
        **overrides,
    )


def _command(cfg: TrainConfig) -> str:
    """The CLI line that reproduces a run (non-default fields only)."""
    parts = ["python -m agents.train"]
    for field in dataclasses.fields(TrainConfig):
        value = getattr(cfg, field.name)
        if value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{field.name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


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


def _probe(checkpoint: Path, bench: BenchConfig, question_ids: Sequence[str]) -> list[float]:
    """Rewards of sampled (temperature 1) episodes on fixed questions and seeds."""
    import torch

    from agents.rollout import run_episodes

    cfg = _base_config(bench)
    policy = load_policy(checkpoint, greedy=False, temperature=1.0, seed=bench.seed)
    with torch.no_grad():
        results = run_episodes(
            policy, cfg.env_kwargs("train"), question_ids=list(question_ids), num_envs=16,
            seed=bench.seed, progress=bench.progress,
        )  # fmt: skip
    return [r.reward for r in results]


def _interval(values: Sequence[float], seed: int) -> dict[str, float]:
    return bootstrap_ci(list(values), seed=seed).to_dict()


def _first_last(records: Sequence[Mapping[str, Any]], window: int, seed: int) -> dict[str, Any]:
    """Episode rewards of the first and the last ``window`` training steps, with bootstrap intervals
    over episodes (paired by nothing: different questions)."""
    window = max(1, min(window, len(records) // 2 or 1))
    first = [x for r in records[:window] for x in r["episode_rewards"]]
    last = [x for r in records[-window:] for x in r["episode_rewards"]]
    accuracy_first = [float(r["accuracy"]) for r in records[:window]]
    accuracy_last = [float(r["accuracy"]) for r in records[-window:]]
    return {
        "window_steps": window,
        "reward_first": _interval(first, seed),
        "reward_last": _interval(last, seed),
        "accuracy_first": float(np.mean(accuracy_first)),
        "accuracy_last": float(np.mean(accuracy_last)),
    }


def run(bench: BenchConfig) -> dict[str, Any]:
    import torch

    torch.set_num_threads(bench.threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    runs = Path(bench.runs)
    report: dict[str, Any] = {"config": dataclasses.asdict(bench), "phases": {}}

    # 1. SFT on oracle demonstrations, dev EM along the way.
    eval_every = max(1, bench.sft_steps // max(1, bench.sft_eval_points))
    sft_cfg = _base_config(
        bench,
        algo="sft",
        out=str(runs / "sft"),
        steps=bench.sft_steps,
        sft_batch_size=bench.sft_batch_size,
        lr=bench.sft_lr,
        warmup_steps=min(20, bench.sft_steps // 10),
        lr_schedule="cosine",
        save_every=bench.sft_steps,
        eval_every=eval_every,
        eval_episodes=48,
    )
    sft_run, sft_time = _run(sft_cfg, bench.reuse)
    sft_records = ckpt.read_metrics(sft_run / "metrics.jsonl")
    test = evaluate_checkpoint(sft_run, "test", hops=1, episodes=bench.test_questions, num_envs=16,
                               seed=bench.seed, progress=bench.progress)  # fmt: skip
    report["phases"]["sft"] = {
        "command": _command(sft_cfg),
        "train_seconds": sft_time,
        "train_cpu_seconds": sum(r["step_cpu_time"] for r in sft_records),
        "demonstrations": "oracle, every single-hop training question",
        "final_loss": sft_records[-1]["loss"],
        "dev_em_curve": [(r["step"], r["eval_em"]) for r in sft_records if "eval_em" in r],
        "test": test,
    }

    # 2-3. NSR and PPO from the SFT checkpoint; the reward probe before and after.
    questions = sft_data.select_questions("factbook", "train", hops=1)
    probe_ids = sft_data.sample_question_ids(questions, bench.probe_questions, bench.seed + 1)
    before = _probe(ckpt.latest_checkpoint(sft_run), bench, probe_ids)
    report["probe"] = {"questions": len(probe_ids), "before": _interval(before, bench.seed)}
    for algo in ("nsr", "ppo"):
        cfg = _base_config(
            bench,
            algo=algo,
            init=str(sft_run),
            out=str(runs / algo),
            steps=bench.rl_steps,
            episodes_per_step=bench.rl_episodes,
            lr=bench.rl_lr,
            save_every=bench.rl_steps,
        )
        run_dir, seconds = _run(cfg, bench.reuse)
        records = ckpt.read_metrics(run_dir / "metrics.jsonl")
        after = _probe(ckpt.latest_checkpoint(run_dir), bench, probe_ids)
        report["phases"][algo] = {
            "command": _command(cfg.resolved()),
            "train_seconds": seconds,
            "train_cpu_seconds": sum(r["step_cpu_time"] for r in records),
            "training": _first_last(records, max(1, bench.rl_steps // 4), bench.seed),
            "probe_after": _interval(after, bench.seed),
            "probe_change": paired_bootstrap_diff(after, before, seed=bench.seed).to_dict(),
        }
    report["total_seconds"] = time.perf_counter() - started
    report["total_cpu_seconds"] = time.process_time() - cpu_started
    write_outputs(report, bench, runs)
    return report


# --- outputs ---------------------------------------------------------------------------------


def _fmt(interval: Mapping[str, float]) -> str:
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def render_markdown(report: Mapping[str, Any]) -> str:
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
        f"same seeds before and after. Reward before (SFT checkpoint): {_fmt(report['probe']['before'])}.",
        "",
        "| run | train min | probe reward after | change (paired) | training reward, first -> last quarter |"
        " training accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for algo in ("nsr", "ppo"):
        phase = report["phases"][algo]
        training = phase["training"]
        lines.append(
            f"| {algo} | {phase['train_seconds'] / 60:.1f} | {_fmt(phase['probe_after'])} "
            f"| {_fmt(phase['probe_change'])} | {_fmt(training['reward_first'])} -> "
            f"{_fmt(training['reward_last'])} "
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


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_figures(report: Mapping[str, Any], out: Path) -> None:
    """The three figures, from ``results.json`` and the metrics copies in ``out`` only."""
    plt = _pyplot()
    sft = ckpt.read_metrics(out / "sft_metrics.jsonl")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([r["step"] for r in sft], [r["loss"] for r in sft], lw=0.8)
    left.set(xlabel="step", ylabel="masked NLL (action tokens)", title="SFT loss", yscale="log")
    curve = report["phases"]["sft"]["dev_em_curve"]
    right.plot([s for s, _ in curve], [e for _, e in curve], marker="o")
    test = report["phases"]["sft"]["test"]
    right.axhline(test["em"], color="C1", ls="--", label=f"test EM {test['em']:.2f} (n={test['n']})")
    right.axhline(0.5, color="grey", ls=":", label="target 0.5")
    right.set(xlabel="step", ylabel="EM", title="SFT greedy EM (dev subset)", ylim=(-0.02, 1), xlim=(0, None))
    right.legend(loc="upper left")
    _save(figure, out / "sft.png")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6.5, 3.6))
    for color, algo in (("C0", "nsr"), ("C1", "ppo")):
        records = ckpt.read_metrics(out / f"{algo}_metrics.jsonl")
        steps = np.array([r["step"] for r in records])
        rewards = np.array([r["reward_mean"] for r in records])
        axis.plot(steps, rewards, color=color, alpha=0.35, lw=0.8, label=f"{algo} per step")
        if len(rewards) >= 3:
            smooth = np.convolve(rewards, np.ones(3) / 3, mode="valid")
            axis.plot(steps[2:], smooth, color=color, lw=2, label=f"{algo} 3-step mean")
    axis.set(xlabel="RL step", ylabel="mean episode reward", title="Training reward from the SFT checkpoint")
    axis.legend()
    _save(figure, out / "rl_reward.png")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5, 3.4))
    labels = ["SFT (before)", "NSR", "PPO"]
    bars = [
        report["probe"]["before"],
        report["phases"]["nsr"]["probe_after"],
        report["phases"]["ppo"]["probe_after"],
    ]
    means = [b["mean"] for b in bars]
    errors = [[b["mean"] - b["low"] for b in bars], [b["high"] - b["mean"] for b in bars]]
    axis.bar(labels, means, yerr=errors, capsize=6, color=["C7", "C0", "C1"])
    axis.set(ylabel="mean reward (95% CI)", title=f"Probe: {report['probe']['questions']} training questions")
    _save(figure, out / "probe.png")
    plt.close(figure)


def write_outputs(report: Mapping[str, Any], bench: BenchConfig, runs: Path) -> None:
    out = Path(bench.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sft", "nsr", "ppo"):
        shutil.copyfile(runs / name / "metrics.jsonl", out / f"{name}_metrics.jsonl")
    atomic_write_lines(out / "results.json", [json.dumps(report, indent=2)])
    atomic_write_lines(out / "results.md", [render_markdown(report)])
    plot_figures(report, out)


def main(argv: Sequence[str] | None = None) -> int:
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
        atomic_write_lines(out / "results.md", [render_markdown(report)])
        plot_figures(report, out)
        return 0
    if quick:
        bench = dataclasses.replace(bench, **QUICK)
    report = run(bench)
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
