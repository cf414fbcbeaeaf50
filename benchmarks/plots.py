"""Rendering of leaderboard results: the Markdown tables and the PNG plots (matplotlib, Agg).

Inputs are the ``pairs`` of ``results.json``: ``{"agent", "task", "summary"}`` dicts, where
``summary`` is what ``benchmarks.leaderboard.summarize_rows`` returns.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Pair = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------- Markdown


def _number(value: float | int | None, digits: int = 3) -> str:
    """
    >>> _number(0.12345), _number(None), _number(3), _number(1234.5, 1)
    ('0.123', 'n.a.', '3', '1234.5')
    """
    if value is None:
        return "n.a."
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _interval(figure: Mapping[str, Any]) -> str:
    """
    >>> _interval({"mean": 0.5, "low": 0.25, "high": 0.75, "n": 4})
    '0.500 [0.250, 0.750]'
    """
    return f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _tasks(pairs: Sequence[Pair]) -> list[str]:
    return list(dict.fromkeys(p["task"] for p in pairs))


def render_markdown(pairs: Sequence[Pair], comparisons: Sequence[Mapping[str, Any]], config: Any) -> str:
    """The leaderboard as Markdown: per task a main table, the pass@k curve and reward components."""
    seeds = list(config.seeds)
    lines = [
        "# SearchQA leaderboard",
        "",
        f"Split `{config.split}`; seeds {seeds}; {config.samples_per_question} sample(s) per question "
        "per seed; "
        f"env arguments {dict(config.env_kwargs) or 'default'}. "
        "Intervals are 95% percentile bootstraps over questions (each question counts once, its samples "
        "averaged). Retry = share of episodes with a failed search (no gold passage in its hits) that "
        "searched again; format err = invalid turns / turns; unique q = distinct / issued queries per "
        "episode; sim = mean pairwise query similarity within an episode; distinct q = distinct queries "
        "over all samples of a question.",
    ]
    for task in _tasks(pairs):
        task_pairs = [p for p in pairs if p["task"] == task]
        lines += ["", f"## {task}", ""]
        main_rows = []
        for pair in task_pairs:
            s = pair["summary"]
            ks = list(s["pass_at_k"])
            behaviour, diversity = s["behaviour"], s["diversity"]
            main_rows.append(
                [
                    pair["agent"],
                    _interval(s["em"]),
                    _interval(s["f1"]),
                    _interval(s["cover_em"]),
                    _interval(s["reward"]),
                    f"{s['pass_at_k'][ks[-1]]['mean']:.3f} (k={ks[-1]})",
                    _number(behaviour["searches_per_episode"], 2),
                    _number(behaviour["reads_per_episode"], 2),
                    _number(behaviour["retry_after_failed_search"], 2),
                    _number(behaviour["format_error_rate"], 3),
                    _number(diversity["unique_query_ratio"], 2),
                    _number(diversity["mean_pairwise_similarity"], 2),
                    _number(diversity["distinct_queries_per_question"], 2),
                    _number(s["tokens_per_episode"], 1),
                    _number(s["wall_time_s"], 1),
                    f"{s['em']['n_questions']} q / {s['em']['n_episodes']} ep",
                ]
            )
        header = ["agent", "EM", "F1", "cover-EM", "reward", "pass@K", "searches/ep", "reads/ep", "retry"]
        header += ["format err", "unique q", "sim", "distinct q", "tokens/ep", "wall s", "n"]
        lines += _table(header, main_rows)

        all_ks = list(dict.fromkeys(k for p in task_pairs for k in p["summary"]["pass_at_k"]))
        lines += ["", "pass@k (unbiased estimator, n = samples per question over all seeds):", ""]
        passk_rows = [
            [p["agent"], *(_number(p["summary"]["pass_at_k"].get(k, {}).get("mean")) for k in all_ks)]
            for p in task_pairs
        ]
        lines += _table(["agent", *(f"k={k}" for k in all_ks)], passk_rows)

        components = list(dict.fromkeys(c for p in task_pairs for c in p["summary"]["reward_components"]))
        lines += ["", "Mean reward components (each in [0, 1], before preset weights):", ""]
        component_rows = [
            [p["agent"], *(_number(p["summary"]["reward_components"].get(c)) for c in components)]
            for p in task_pairs
        ]
        lines += _table(["agent", *components], component_rows)

    if comparisons:
        lines += ["", "## Paired comparisons (A - B, bootstrap over shared questions)", ""]
        rows = []
        for comparison in comparisons:
            diff = comparison["diff"]
            rows.append(
                [f"{comparison['a']} - {comparison['b']}", comparison["task"]]
                + [
                    _interval(diff[m]) + (" *" if _excludes_zero(diff[m]) else "")
                    for m in ("em", "f1", "reward")
                ]
                + [str(diff["em"]["n"])]
            )
        lines += _table(["A - B", "task", "ΔEM", "ΔF1", "Δreward", "questions"], rows)
        lines += ["", "`*`: the 95% interval excludes 0."]
    return "\n".join(lines) + "\n"


def _excludes_zero(figure: Mapping[str, Any]) -> bool:
    return figure["low"] > 0 or figure["high"] < 0


# ---------------------------------------------------------------------------------------------- PNG


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install -e .[bench]") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_atomically(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def draw_pass_at_k(axis: Any, curve: Mapping[Any, Mapping[str, float]], label: str, alpha: float) -> None:
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
    axis.set_xscale("log", base=2)
    axis.set_xlabel("k")
    axis.set_ylabel("pass@k")
    axis.set_ylim(-0.02, 1.02)


def plot_pass_at_k(pairs: Sequence[Pair], path: str | os.PathLike[str]) -> Path:
    """pass@k against k (log2 axis), one line per agent with its interval shaded; a panel per task."""
    plt = _pyplot()
    tasks = _tasks(pairs)
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for pair in (p for p in pairs if p["task"] == task):
            draw_pass_at_k(axis, pair["summary"]["pass_at_k"], pair["agent"], alpha=0.15)
        style_pass_at_k_axis(axis)
        axis.set_title(f"pass@k on {task}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    try:
        return _save_atomically(figure, Path(path))
    finally:
        plt.close(figure)


def plot_reward_components(pairs: Sequence[Pair], path: str | os.PathLike[str]) -> Path:
    """Mean reward components as grouped bars (a group per component, a bar per agent)."""
    plt = _pyplot()
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
    try:
        return _save_atomically(figure, Path(path))
    finally:
        plt.close(figure)
