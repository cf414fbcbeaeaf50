"""Where a campaign stands: every run the scale's experiments need, and how far each has got.

``python -m benchmarks.experiments status --scale smollm2`` trains nothing: it reads the run
folders under ``--runs`` and writes ``status.md`` (and ``status.json``) under the results, so a
campaign that spans sessions can say which runs exist, which are half-way and which are still
to start, and which experiments each one serves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.experiments.common import Context, payload, write_outputs
from benchmarks.experiments.scales import RL_RUNS, razor_sft_config, sft_configs, varied_sft_config
from benchmarks.tables import table


def needed_runs(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every run of the scale's experiments: its planned steps and the experiments it serves."""
    arms = ctx.scale.arms
    uses: dict[str, set[str]] = {}
    for experiment, names in (
        ("persistence", arms.persistence),
        ("passk", arms.passk),
        ("diversity", arms.passk),
        ("hacking", arms.hacking),
        ("razor", ("grpo",)),
        ("learning", arms.learning),
    ):
        for name in ctx.scale.run_names(names):
            uses.setdefault(name, set()).add(experiment)
    base, start = sft_configs(ctx.scale, ctx.runs, ctx.data)
    planned = {"sft": (start.steps, {"all"})}
    if base is not None:
        planned["sft-base"] = (base.steps, {"all"})
    planned["sft-varied"] = (varied_sft_config(ctx.scale, ctx.runs, ctx.data).steps, {"diversity"})
    planned["sft-more"] = (razor_sft_config(ctx.scale, ctx.runs, ctx.data).steps, {"razor"})
    for name, experiments in uses.items():
        planned[name] = (ctx.scale.rl_steps, experiments)
    return {
        name: {"steps": steps, "experiments": sorted(experiments), **progress(ctx.runs / name)}
        for name, (steps, experiments) in planned.items()
    }


def progress(run: Path) -> dict[str, Any]:
    """The run's last logged step, latest checkpoint, CPU and wall minutes so far, and machines."""
    from agents import checkpoint as ckpt

    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return {
            "logged_steps": 0,
            "checkpoint": None,
            "cpu_minutes": 0.0,
            "wall_minutes": 0.0,
            "machines": [],
        }
    records = ckpt.read_metrics(metrics)
    latest = ckpt.latest_checkpoint(run)
    machines = run / "machine.jsonl"
    return {
        "logged_steps": len(records),
        "checkpoint": int(ckpt.read_state(latest)["step"]) if latest else None,
        "cpu_minutes": sum(float(r.get("step_cpu_time", 0.0)) for r in records) / 60,
        "wall_minutes": float(records[-1].get("wall_time", 0.0)) / 60 if records else 0.0,
        # Each start or resume of the run, with the machine its CPU minutes were measured on.
        "machines": ckpt.read_metrics(machines) if machines.is_file() else [],
    }


def state(entry: Mapping[str, Any]) -> str:
    """finished, at step N of M, or not started."""
    if entry["checkpoint"] is not None and entry["checkpoint"] >= entry["steps"]:
        return "finished"
    if entry["logged_steps"]:
        return f"at step {entry['checkpoint'] or 0} of {entry['steps']} (logged {entry['logged_steps']})"
    return "not started"


def run(ctx: Context) -> dict[str, Any]:
    """Write ``results/status``: the campaign's runs and how far each has got."""
    started = time.perf_counter()
    runs = needed_runs(ctx)
    rows = [
        [
            name,
            state(entry),
            f"{entry['cpu_minutes']:.0f} / {entry['wall_minutes']:.0f}",
            ", ".join(entry["experiments"]),
            RL_RUNS[name.rsplit("_s", 1)[0]].algo if name.rsplit("_s", 1)[0] in RL_RUNS else "sft",
        ]
        for name, entry in runs.items()
    ]
    done = sum(state(e) == "finished" for e in runs.values())
    md = [
        f"# Campaign status: scale {ctx.scale.name}, runs in `{ctx.runs}`",
        "",
        f"{done} of {len(runs)} runs finished. Rerunning an experiment trains what is missing "
        "(resuming a stopped run) and reuses the rest.",
        "",
        *table(["run", "state", "CPU / wall min", "serves", "algorithm"], rows),
    ]
    out = ctx.out("status")
    write_outputs(out, payload(ctx, started, {"runs": json.loads(json.dumps(runs))}), md)
    return {"runs": runs}
