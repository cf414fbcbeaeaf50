r"""Before/after training reward of RL runs, from their own ``metrics.jsonl``, and their curves.

    python -m benchmarks.learning_report runs/smol_nsr runs/smol_ppo \\
        --out benchmarks/results/learning_smollm2

For each run: the mean reward of the training episodes in the first and the last quarter of
its steps (at least one step each), with 95% bootstrap intervals over episodes, and the
difference with an interval from independent resamples of the two sets; its steps, CPU and
wall time, the machine it ran on, and the dev EM logged at each evaluated checkpoint with the
one chosen on it (``RUN@dev``). ``learning.png`` draws each run's training reward and dev EM over
steps. ``rl_diagnostics.md`` sets each run's training metrics (train EM, format, retry and
evidence rewards, tokens per episode, approximate KL, clipped share, gradient norm) of its first
quarter against its last, what a run that does not learn is diagnosed by. Copies each run's
``metrics.jsonl`` and ``config.json`` next to the report, so the figures can be recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tables import cell, table
from searchenv.cli_errors import ArgumentParser, reports_errors, user_input
from searchenv.metrics import bootstrap_ci
from tasks.storage import atomic_write_json, atomic_write_text


def episode_rewards(run: Path) -> list[list[float]]:
    """Per training step, the rewards of the episodes collected at that step."""
    steps = []
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "episode_rewards" in record:
            steps.append([float(r) for r in record["episode_rewards"]])
    if not steps:
        raise ValueError(f"{run}/metrics.jsonl has no training episodes (is it an RL run?)")
    return steps


def before_after(steps: list[list[float]], seed: int = 0) -> dict[str, Any]:
    """Mean reward of the first and last quarter of the steps, and their difference.

    The difference's interval comes from independent resamples of the two sets of episodes
    (different questions: nothing pairs them).
    """
    quarter = max(1, len(steps) // 4)
    first = np.array([r for step in steps[:quarter] for r in step])
    last = np.array([r for step in steps[-quarter:] for r in step])
    rng = np.random.default_rng(seed)
    diffs = [rng.choice(last, last.size).mean() - rng.choice(first, first.size).mean() for _ in range(2000)]
    return {
        "steps": len(steps),
        "steps_per_quarter": quarter,
        "first": bootstrap_ci(first, seed=seed).to_dict(),
        "last": bootstrap_ci(last, seed=seed).to_dict(),
        "difference": {
            "mean": float(last.mean() - first.mean()),
            "low": float(np.percentile(diffs, 2.5)),
            "high": float(np.percentile(diffs, 97.5)),
        },
    }


# What a run that does not learn is diagnosed by: its training metrics, first quarter -> last.
# Entropy is not among them: it needs the full-vocabulary softmax at every action token, which
# the cheap path computes only when the entropy bonus is on.
DIAGNOSTICS = {
    "accuracy": "train EM",
    "reward_format": "format",
    "reward_retry": "retry",
    "reward_evidence": "evidence",
    "tokens_per_episode": "tokens/ep",
    "approx_kl": "approx KL",
    "clip_fraction": "clipped",
    "grad_norm": "grad norm",
}


def diagnostics(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per ``DIAGNOSTICS`` metric the run logged: its mean over the first and the last quarter of steps.

    >>> steps = [{"episode_rewards": [0.0], "accuracy": a, "generated_tokens": 40, "episodes": 2}
    ...          for a in (0.0, 0.5, 0.5, 1.0)]
    >>> diagnostics(steps)["accuracy"], diagnostics(steps)["tokens_per_episode"]
    ({'first': 0.0, 'last': 1.0}, {'first': 20.0, 'last': 20.0})
    """
    training = [dict(r) for r in records if "episode_rewards" in r]
    for record in training:
        if record.get("episodes"):
            record["tokens_per_episode"] = record.get("generated_tokens", 0.0) / record["episodes"]
    quarter = max(1, len(training) // 4)
    result = {}
    for key in DIAGNOSTICS:
        first = [float(r[key]) for r in training[:quarter] if key in r]
        last = [float(r[key]) for r in training[-quarter:] if key in r]
        if first and last:
            result[key] = {"first": float(np.mean(first)), "last": float(np.mean(last))}
    return result


def diagnostics_table(runs: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown lines: one row per run, one ``first -> last`` column per metric any run logged."""
    keys = [key for key in DIAGNOSTICS if any(key in found for found in runs.values())]
    rows = [
        [
            name,
            *(f"{found[k]['first']:.3g} -> {found[k]['last']:.3g}" if k in found else "n.a." for k in keys),
        ]
        for name, found in runs.items()
    ]
    return table(["run", *(DIAGNOSTICS[key] for key in keys)], rows)


def dev_evaluations(run: Path) -> dict[str, Any]:
    """The dev EM logged at each evaluated step (by checkpoint step), and the dev-chosen checkpoint."""
    from agents.checkpoint import dev_evaluations, dev_selected_checkpoint

    logged = {str(step): em for step, em in dev_evaluations(run).items()}
    try:
        choice = dev_selected_checkpoint(run)
    except FileNotFoundError:
        return {"by_step": logged, "chosen_step": None}
    return {"by_step": logged, "chosen_step": choice.step, "chosen_dev_em": choice.dev_em}


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Write ``rl_reward.json`` and ``rl_reward.md`` for the runs given, with copies of their logs."""
    parser = ArgumentParser(prog="python -m benchmarks.learning_report", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-plots", action="store_true", help="skip learning.png")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {}
    rows = []
    curves = {}
    diagnosed = {}
    with user_input():
        for run in args.runs:
            if not (run / "metrics.jsonl").is_file():
                raise FileNotFoundError(f"{run}: no metrics.jsonl (is it a training run folder?)")
    for run in args.runs:
        records = [
            json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        curves[run.name] = records
        diagnosed[run.name] = diagnostics(records)
        result = before_after(episode_rewards(run))
        result["wall_time_s"] = float(records[-1].get("wall_time", 0.0)) if records else 0.0
        result["cpu_time_s"] = float(sum(r.get("step_cpu_time", 0.0) for r in records))
        result["dev"] = dev_evaluations(run)
        machines = run / "machine.jsonl"
        result["machine"] = (
            [json.loads(line) for line in machines.read_text(encoding="utf-8").splitlines()]
            if machines.exists()
            else "not recorded: the run predates machine.jsonl"
        )
        report[run.name] = result
        first, last, diff = result["first"], result["last"], result["difference"]
        minutes = f"{result['cpu_time_s'] / 60:.1f} / {result['wall_time_s'] / 60:.1f}"
        dev = result["dev"]
        chosen = str(dev["chosen_step"])
        dev_text = ", ".join(
            f"**{step}: {em:.3f}**" if step == chosen else f"{step}: {em:.3f}"
            for step, em in dev["by_step"].items()
        )
        rows.append(
            [
                run.name,
                str(result["steps"]),
                minutes,
                dev_text or "n.a.",
                cell(first),
                cell(last),
                cell(diff, signed=True),
            ]
        )
        for name in ("metrics.jsonl", "config.json", "machine.jsonl"):
            if (run / name).exists():
                atomic_write_text(args.out / run.name / name, (run / name).read_text(encoding="utf-8"))
    atomic_write_json(args.out / "rl_reward.json", report, indent=2, sort_keys=False)
    if not args.no_plots:
        from benchmarks.plotting import plot_learning_curves

        print(f"plot: {plot_learning_curves(curves, args.out / 'learning.png')}")
    header = ["run", "steps", "CPU / wall min", "dev EM by step (chosen in bold)", "first quarter reward"]
    header += ["last quarter reward", "change"]
    lines = table(header, rows)
    atomic_write_text(args.out / "rl_reward.md", "".join(f"{line}\n" for line in lines))
    # Beside the reward report, not in it: committed reports stay reproducible as they were.
    named = {name: {"machine": report[name]["machine"], **found} for name, found in diagnosed.items()}
    atomic_write_json(args.out / "rl_diagnostics.json", named, indent=2, sort_keys=False)
    diagnosis = diagnostics_table(diagnosed)
    atomic_write_text(args.out / "rl_diagnostics.md", "".join(f"{line}\n" for line in diagnosis))
    print("\n".join([*lines, "", *diagnosis]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
