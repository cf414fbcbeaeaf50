"""Episodes per second in-process against one and two Ray actors, side by side, one run.

    python -m benchmarks.bench_ray [--episodes 240] [--lm-episodes 32] [--rounds 3]

Two agents on factbook test questions (bm25s, the env's defaults otherwise):

- ``bm25``, the scripted heuristic (``max_turns=4``): episodes cost milliseconds, so this
  measures the per-episode overhead of the actors (pickled results, transcripts, records);
- the tiny LM (``agents.lm``, 5.3M parameters, sampling at temperature 1, ``max_turns=2``,
  up to 24 new tokens per action, 8 envs per batch): generation dominates, as in a trainer's
  rollouts. Its weights reach the actors through the object store (``ship_lm_policy``).

Settings, played in turn in every round (the median round is reported): in-process
(``run_episodes``, one torch thread; the LM also with two), then ``run_episodes_on_ray`` on
one and on two actors (one thread each). The actors are started and warmed before timing;
their start-up (process, imports, index and weights) is reported apart, as ``cold s``.
Results: ``benchmarks/results/ray.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_env import machine
from benchmarks.tables import cell, table
from tasks.storage import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
SCRIPTED_ENV = {"split": "test", "max_turns": 4}
LM_ENV = {"split": "test", "max_turns": 2}


def cpu_seconds() -> float:
    """CPU time so far of this process and of the kept rollout actors (not Ray's own daemons)."""
    import psutil
    import ray

    from agents.distributed import _Pool

    total = time.process_time()
    for pid in ray.get([actor.pid.remote() for actor in _Pool.actors]):
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def timed(play: Callable[[], list[Any]]) -> dict[str, float]:
    """Wall seconds, CPU seconds (this process and the actors), episodes and generated tokens of a call."""
    started, cpu = time.perf_counter(), cpu_seconds()
    results = play()
    return {
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu,
        "episodes": len(results),
        "tokens": sum(r.generated_tokens or 0 for r in results),
    }


def bm25(seed: int) -> Any:
    """The scripted heuristic (a picklable factory for the actors)."""
    from agents.scripted import make_policy

    return make_policy("bm25", seed=seed)


def settings(args: argparse.Namespace) -> dict[str, dict[str, Callable[[], list[Any]]]]:
    """Per agent, per setting: a call that plays that agent's episodes once."""
    import torch

    from agents.distributed import run_episodes_on_ray, ship_lm_policy
    from agents.lm.models import load_model
    from agents.lm.policy import LMPolicy
    from agents.rollout import run_episodes

    model, tokenizer = load_model("tiny")
    lm = LMPolicy(model, tokenizer, max_new_tokens=24, temperature=1.0, seed=0, name="tiny")
    shipped = ship_lm_policy(lm)
    scripted = {"n_episodes": args.episodes, "num_envs": 8, "progress": False}
    sampled = {"n_episodes": args.lm_episodes, "num_envs": 8, "progress": False}

    def in_process(threads: int) -> Callable[[], list[Any]]:
        def play() -> list[Any]:
            torch.set_num_threads(threads)
            return run_episodes(lm, LM_ENV, **sampled)

        return play

    return {
        "bm25": {
            "in-process": lambda: run_episodes(bm25(0), SCRIPTED_ENV, **scripted),
            "ray, 1 actor": lambda: run_episodes_on_ray(bm25, SCRIPTED_ENV, num_actors=1, **scripted),
            "ray, 2 actors": lambda: run_episodes_on_ray(bm25, SCRIPTED_ENV, num_actors=2, **scripted),
        },
        "tiny LM": {
            "in-process": in_process(1),
            "in-process, 2 threads": in_process(2),
            "ray, 1 actor": lambda: run_episodes_on_ray(shipped, LM_ENV, num_actors=1, **sampled),
            "ray, 2 actors": lambda: run_episodes_on_ray(shipped, LM_ENV, num_actors=2, **sampled),
        },
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``rounds`` rounds of every setting; a round starts each actor count's pool afresh."""
    import ray

    from agents.distributed import shutdown_actors

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    plays = settings(args)
    if not args.two_threads:
        del plays["tiny LM"]["in-process, 2 threads"]
    for by_setting in plays.values():
        by_setting["in-process"]()  # this process loads the index, the JIT and the model too
    cold: dict[tuple[str, str], list[float]] = {}
    calls: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        # One pool at a time (agents.distributed keeps one): its first call per agent is cold.
        for group in ("in-process", "ray, 1 actor", "ray, 2 actors"):
            shutdown_actors()
            for agent, by_setting in plays.items():
                for name in (n for n in by_setting if n.startswith(group)):
                    if name.startswith("ray"):
                        cold.setdefault((agent, name), []).append(timed(by_setting[name])["wall"])
                    calls.setdefault((agent, name), []).append(timed(by_setting[name]))
    shutdown_actors()
    ray.shutdown()
    order = [(agent, name) for agent, by_setting in plays.items() for name in by_setting]
    return [summarize(agent, name, calls, cold.get((agent, name))) for agent, name in order]


def summarize(
    agent: str, name: str, calls: dict[tuple[str, str], list[dict[str, float]]], cold: list[float] | None
) -> dict[str, Any]:
    """One setting's row: medians over rounds, speed relative to the agent's in-process setting."""
    own = calls[(agent, name)]

    def median(key: str, of: list[dict[str, float]] = own) -> float:
        return statistics.median(call[key] for call in of)

    episodes_per_s = statistics.median(call["episodes"] / call["wall"] for call in own)
    tokens = median("tokens")
    return {
        "agent": agent,
        "setting": name,
        "episodes": int(median("episodes")),
        "rounds": own,
        "wall_s_median": median("wall"),
        "episodes_per_s": episodes_per_s,
        "speedup_vs_in_process": median("wall", calls[(agent, "in-process")]) / median("wall"),
        "cpu_ms_per_episode": 1000 * median("cpu") / median("episodes"),
        "generated_tokens_median": tokens if tokens else None,
        "tokens_per_s": statistics.median(call["tokens"] / call["wall"] for call in own) if tokens else None,
        "cold_start_s_median": statistics.median(cold) if cold else None,
    }


def render(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The results as Markdown."""
    header = ["agent", "setting", "episodes", "wall s", "episodes/s", "vs in-process", "CPU ms/ep"]
    header += ["tokens", "tokens/s", "cold s"]
    body = [
        [
            r["agent"],
            r["setting"],
            str(r["episodes"]),
            cell(r["wall_s_median"], 2),
            cell(r["episodes_per_s"], 1),
            f"{r['speedup_vs_in_process']:.2f}x",
            cell(r["cpu_ms_per_episode"], 1),
            cell(r["generated_tokens_median"], 0),
            cell(r["tokens_per_s"], 0),
            cell(r["cold_start_s_median"], 1),
        ]
        for r in rows
    ]
    lines = [
        "# Episodes per second: in-process against Ray actors",
        "",
        f"`python -m benchmarks.bench_ray` on {facts['machine']['cpu_model']}, "
        f"{facts['machine']['usable_cpus']} usable CPUs, Ray {facts['ray']}; local cluster of 2 CPUs; "
        f"{facts['rounds']} rounds, medians shown; load average {facts['load_before']} before, "
        f"{facts['load_after']} after. `cold s`: the first call of a new pool (actor processes, imports, "
        "index, weights; for the LM the pool already exists, so imports of torch and the weights), "
        "median over rounds, not in the timed figures. `CPU ms/ep`: CPU time of this process and the "
        "actor processes per episode (Ray's raylet and GCS left out), which other jobs on the machine "
        "change far less than wall time. `tokens`: tokens the LM generated per call (a sampling policy "
        "draws other episodes on actors, so lengths differ between settings).",
        "",
        *table(header, body),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write ``benchmarks/results/ray.{md,json}``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_ray", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--episodes", type=int, default=240, help="bm25 episodes per timed call")
    parser.add_argument("--lm-episodes", type=int, default=32, help="tiny LM episodes per timed call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--two-threads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the LM on 2 torch threads",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import ray

    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = measure(args)
    facts = {
        "machine": machine(),
        "ray": ray.__version__,
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    markdown = render(rows, facts)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "ray.json", {**facts, "rows": rows}, indent=1, sort_keys=False)
    atomic_write_text(args.out / "ray.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
