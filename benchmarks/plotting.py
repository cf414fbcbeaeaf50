"""Every PNG figure of the benchmarks (matplotlib with the Agg backend, imported lazily).

The leaderboard's pass@k curves and reward components, the experiments' bar charts and pass@k
curves, and the learning benchmark's SFT, RL-reward and probe figures. Inputs are plain figures
(``{mean, low, high}`` intervals and metrics records), so plots can be redrawn from results
files alone. Files are written atomically and readable by others (mkstemp creates 0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Pair = Mapping[str, Any]
Interval = Mapping[str, float]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend.

    Raises:
        ImportError: matplotlib is missing, naming the extra that installs it.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install -e .[bench]") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG through a temp file and a rename, then close it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        pyplot().close(figure)
    return target


def _error_bars(intervals: Sequence[Interval]) -> list[list[float]]:
    return [[s["mean"] - s["low"] for s in intervals], [s["high"] - s["mean"] for s in intervals]]


# ---------------------------------------------------------------------------------------------- pass@k


def draw_pass_at_k(axis: Any, curve: Mapping[Any, Interval], label: str, alpha: float) -> None:
    """One pass@k curve (k -> {mean, low, high}) with its interval as a shaded band."""
    ks = list(curve)
    line = axis.plot([int(k) for k in ks], [curve[k]["mean"] for k in ks], marker="o", label=label)[0]
    axis.fill_between(
        [int(k) for k in ks],
        [curve[k]["low"] for k in ks],
        [curve[k]["high"] for k in ks],
        alpha=alpha,
        color=line.get_color(),
    )


def style_pass_at_k_axis(axis: Any) -> None:
    """Log2 k axis and a [0, 1] pass@k axis."""
    axis.set_xscale("log", base=2)
    axis.set_xlabel("k")
    axis.set_ylabel("pass@k")
    axis.set_ylim(-0.02, 1.02)


def plot_passk_curves(curves: Mapping[str, Mapping[int, Interval]], path: Path, title: str) -> Path:
    """The experiments' pass@k: one curve per policy on one panel."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name, curve in curves.items():
        draw_pass_at_k(axis, curve, name, alpha=0.12)
    style_pass_at_k_axis(axis)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    return save_figure(figure, path)


# ---------------------------------------------------------------------------------------------- leaderboard


def _tasks(pairs: Sequence[Pair]) -> list[str]:
    return list(dict.fromkeys(p["task"] for p in pairs))


def plot_pass_at_k(pairs: Sequence[Pair], path: str | os.PathLike[str]) -> Path:
    """pass@k against k (log2 axis), one line per agent with its interval shaded; a panel per task."""
    plt = pyplot()
    tasks = _tasks(pairs)
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for pair in (p for p in pairs if p["task"] == task):
            draw_pass_at_k(axis, pair["summary"]["pass_at_k"], pair["agent"], alpha=0.15)
        style_pass_at_k_axis(axis)
        axis.set_title(f"pass@k on {task}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, path)


def plot_reward_components(pairs: Sequence[Pair], path: str | os.PathLike[str]) -> Path:
    """Mean reward components as grouped bars (a group per component, a bar per agent)."""
    plt = pyplot()
    tasks = _tasks(pairs)
    figure, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        task_pairs = [p for p in pairs if p["task"] == task]
        components = list(dict.fromkeys(c for p in task_pairs for c in p["summary"]["reward_components"]))
        width = 0.8 / max(1, len(task_pairs))
        for index, pair in enumerate(task_pairs):
            values = [pair["summary"]["reward_components"].get(c, 0.0) for c in components]
            positions = [i + (index - (len(task_pairs) - 1) / 2) * width for i in range(len(components))]
            axis.bar(positions, values, width=width, label=pair["agent"])
        axis.set_xticks(range(len(components)), components, rotation=20)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("mean over episodes")
        axis.set_title(f"reward components on {task}")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, path)


# ---------------------------------------------------------------------------------------------- experiments


def plot_interval_bars(
    figures: Mapping[str, Mapping[str, Interval]], metrics: Sequence[str], path: Path, title: str
) -> Path:
    """A panel per metric, a bar per policy with its 95% interval."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    names = list(figures)
    for axis, metric in zip(axes[0], metrics, strict=True):
        stats = [figures[n][metric] for n in names]
        axis.bar(
            names, [s["mean"] for s in stats], yerr=_error_bars(stats), capsize=4, color="tab:blue", alpha=0.7
        )
        axis.set_title(metric.replace("_", " "))
        axis.tick_params(axis="x", rotation=30)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{title} (95% bootstrap CI over questions)")
    return save_figure(figure, path)


def plot_hacking(
    probes: Mapping[str, Mapping[str, Any]],
    figures: Mapping[str, Mapping[str, Any]],
    agents: Sequence[str],
    presets: Sequence[str],
    path: Path,
) -> Path:
    """(a) probe rewards per preset (keys ``preset/agent``), (b) RL policies' repeated-query rate."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.38
    offsets = (-width / 2, width / 2)
    for offset, preset in zip(offsets, presets, strict=True):
        stats = [probes[f"{preset}/{a}"]["reward"] for a in agents]
        means = [s["mean"] for s in stats]
        left.bar(
            np.arange(len(agents)) + offset, means, width, yerr=_error_bars(stats), capsize=3, label=preset
        )
    left.set_xticks(np.arange(len(agents)), agents)
    left.set_ylabel("mean episode reward")
    left.set_title("(a) scripted probes vs honest bm25")
    left.legend()
    names = list(figures)
    rates = [figures[n]["repeated_query_rate"] or 0.0 for n in names]
    right.bar(names, rates, color="tab:red", alpha=0.7)
    right.set_ylabel("share of searches repeating an earlier query")
    right.set_title("(b) RL: repeated-query rate (greedy, test)")
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


# ---------------------------------------------------------------------------------------------- learning


def plot_sft(records: Sequence[Mapping[str, Any]], sft: Mapping[str, Any], path: Path) -> Path:
    """SFT loss per step, and the dev-EM curve against the final test EM and the 0.5 target."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([r["step"] for r in records], [r["loss"] for r in records], lw=0.8)
    left.set(xlabel="step", ylabel="masked NLL (action tokens)", title="SFT loss", yscale="log")
    curve = sft["dev_em_curve"]
    right.plot([s for s, _ in curve], [e for _, e in curve], marker="o")
    test = sft["test"]
    right.axhline(test["em"], color="C1", ls="--", label=f"test EM {test['em']:.2f} (n={test['n']})")
    right.axhline(0.5, color="grey", ls=":", label="target 0.5")
    right.set(xlabel="step", ylabel="EM", title="SFT greedy EM (dev subset)", ylim=(-0.02, 1), xlim=(0, None))
    right.legend(loc="upper left")
    return save_figure(figure, path, dpi=110)


def plot_rl_reward(records: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Per-step mean training reward of each RL run, with a 3-step running mean."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 3.6))
    for index, (algo, run) in enumerate(records.items()):
        color = f"C{index}"
        steps = np.array([r["step"] for r in run])
        rewards = np.array([r["reward_mean"] for r in run])
        axis.plot(steps, rewards, color=color, alpha=0.35, lw=0.8, label=f"{algo} per step")
        if len(rewards) >= 3:
            smooth = np.convolve(rewards, np.ones(3) / 3, mode="valid")
            axis.plot(steps[2:], smooth, color=color, lw=2, label=f"{algo} 3-step mean")
    axis.set(xlabel="RL step", ylabel="mean episode reward", title="Training reward from the SFT checkpoint")
    axis.legend()
    return save_figure(figure, path, dpi=110)


def plot_learning_curves(records: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Per run: training reward per step (and its 10-step running mean), and dev EM over steps."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for index, (name, run) in enumerate(records.items()):
        color = f"C{index % 10}"
        trained = [r for r in run if "reward_mean" in r]
        steps = np.array([r["step"] for r in trained])
        rewards = np.array([r["reward_mean"] for r in trained])
        left.plot(steps, rewards, color=color, alpha=0.25, lw=0.7)
        window = min(10, len(rewards))
        if window >= 2:
            smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1 :], smooth, color=color, lw=1.8, label=name)
        evaluated = [r for r in run if "eval_em" in r]
        if evaluated:
            evaluated_steps = [r["step"] + 1 for r in evaluated]
            ems = [r["eval_em"] for r in evaluated]
            right.plot(evaluated_steps, ems, marker="o", color=color, label=name)
    left.set(xlabel="step", ylabel="mean episode reward", title="Training reward (10-step mean)")
    right.set(xlabel="step", ylabel="greedy EM", title="Dev EM during training", ylim=(0, 1))
    left.legend(fontsize=8)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    return save_figure(figure, path, dpi=110)


def plot_probe(bars: Mapping[str, Interval], questions: int, path: Path) -> Path:
    """Probe reward before (first bar) and after each RL run, with 95% intervals."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.4))
    stats = list(bars.values())
    colors = ["C7", *(f"C{i}" for i in range(len(stats) - 1))]
    axis.bar(list(bars), [s["mean"] for s in stats], yerr=_error_bars(stats), capsize=6, color=colors)
    axis.set(ylabel="mean reward (95% CI)", title=f"Probe: {questions} training questions")
    return save_figure(figure, path, dpi=110)


def plot_razor(
    points: Mapping[str, Mapping[str, tuple[float, float]]],
    fits: Mapping[str, Mapping[str, float]],
    path: Path,
) -> Path:
    """RL's Razor: per forgetting measure, each checkpoint's forgetting against its KL to the start.

    ``points[measure][label] = (kl, forgetting)``; a label's run (``run.step``) picks its colour,
    and the fitted slope is drawn through the points' means.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 4), squeeze=False)
    for axis, (measure, by_label) in zip(axes[0], points.items(), strict=True):
        runs = sorted({label.rsplit(".", 1)[0] for label in by_label})
        for index, run in enumerate(runs):
            xy = np.array([v for label, v in by_label.items() if label.rsplit(".", 1)[0] == run])
            axis.scatter(xy[:, 0], xy[:, 1], label=run, color=f"C{index}")
        if by_label and np.isfinite(fits[measure]["slope"]):
            xy = np.array(list(by_label.values()))
            xs = np.linspace(xy[:, 0].min(), xy[:, 0].max(), 20)
            axis.plot(
                xs, xy[:, 1].mean() + fits[measure]["slope"] * (xs - xy[:, 0].mean()), color="grey", ls="--"
            )
        axis.axhline(0.0, color="black", lw=0.5)
        axis.set_xlabel("KL(checkpoint || start) on the new task (nats / episode)")
        axis.set_ylabel(f"forgetting: {measure}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)
