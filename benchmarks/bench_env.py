"""Env overhead: a search step through the env against the bare retriever call it wraps.

    python -m benchmarks.bench_env --passages 100000

Everything below comes from one run of one process, in CPU time of this process (other jobs on
shared cores inflate it less than wall time, though they still slow it: the result records the
load average). The queries are cut into blocks; each block is timed through the bare retriever
and through ``env.step``, back to back in alternating order, and every figure is a median over
blocks. Three views of the overhead:

- ``overhead_share``: (env step - bare retriever call) / env step, the headline (target <= 10%).
  It also charges the env for the retriever running colder inside a step than back to back.
- ``env_own_share``: within the same steps, the time spent outside the retriever call, over the
  step (an env whose retriever is wrapped by a timer: paired, so load hits both sides alike).
- ``env_only_ms``: the env's own work with warm caches: steps whose retriever is a replay of
  recorded answers, so no index scan in between evicts the interpreter's working set.

Both sides are warmed up first (numba compiles on the first query; the per-passage clause
indexes of the snippets are cached), as in RL, where a rollout asks the same questions again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchenv.env import SearchQAEnv
from searchenv.resources import shared_retriever
from searchenv.retrieval import Hit, Retriever
from tasks.records import atomic_write_lines

TARGET_SHARE = 0.10


def _cpu_seconds(fn: Callable[[str], object], items: Sequence[str]) -> float:
    started = time.process_time()
    for item in items:
        fn(item)
    return time.process_time() - started


class _Timed:
    """A retriever wrapper that adds up the CPU time spent inside ``search``."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.seconds = 0.0

    def search(self, query: str, k: int = 10) -> list[Hit]:
        started = time.process_time()
        hits = self.inner.search(query, k)
        self.seconds += time.process_time() - started
        return hits

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return [self.search(query, k) for query in queries]


class _Replay:
    """A retriever stand-in that answers from recorded results."""

    backend = "replay"

    def __init__(self, answers: dict[str, list[Hit]]) -> None:
        self.answers = answers

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.answers[query]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return [self.answers[query] for query in queries]


def machine() -> dict[str, Any]:
    """What the figures were measured on: the CPU model, how many CPUs this process may use."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model
            )
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "usable_cpus": usable, "python": platform.python_version()}


def measure(
    n_passages: int, n_queries: int, rounds: int, block: int, top_k: int, backend: str
) -> dict[str, Any]:
    """Median per-call CPU times of the bare retriever and the env step, and the overhead shares."""
    from tasks.synthetic import synthetic_task

    task = synthetic_task(n_passages=n_passages, seed=0)
    retriever = shared_retriever(task.corpus, backend)
    # A plain env, one whose retriever is timed from inside, one whose retriever is a replay.
    envs = [
        SearchQAEnv(task=task, split="train", backend=backend, max_turns=10**9, top_k=top_k) for _ in range(3)
    ]
    _, timed_env, replay_env = envs
    timed = _Timed(retriever)
    timed_env.retriever = timed
    rng = np.random.default_rng(0)
    all_questions = [q.question for qs in task.splits.values() for q in qs]
    queries = [all_questions[i] for i in rng.integers(len(all_questions), size=n_queries)]
    replay_env.retriever = _Replay({q: retriever.search(q, top_k) for q in queries})  # warms it up too

    def bare(query: str) -> object:
        return retriever.search(query, top_k)

    steps = [lambda query, e=e: e.step({"tool": "search", "query": query}) for e in envs]
    load_before = os.getloadavg()
    for one_env, step in zip(envs, steps):
        # One long episode: a reset per block would be timed too, and it is not part of a step.
        one_env.reset(seed=0)
        _cpu_seconds(step, queries)
    blocks = [queries[i : i + block] for i in range(0, len(queries), block)]
    rows = []  # per block: bare, env step, timed step, retriever inside it, replayed step
    for r in range(rounds):
        for b, items in enumerate(blocks):
            bare_first = (r + b) % 2 == 0
            bare_s = _cpu_seconds(bare, items) if bare_first else 0.0
            step_s = _cpu_seconds(steps[0], items)
            bare_s = bare_s if bare_first else _cpu_seconds(bare, items)
            timed.seconds = 0.0
            timed_s = _cpu_seconds(steps[1], items)
            rows.append((bare_s, step_s, timed_s, timed.seconds, _cpu_seconds(steps[2], items)))
    per_call = np.array(rows) / block
    bare_t, step_t, timed_t, inside_t, replay_t = per_call.T
    shares = (step_t - bare_t) / step_t
    return {
        "passages": n_passages,
        "backend": backend,
        "top_k": top_k,
        "queries": n_queries,
        "rounds": rounds,
        "block": block,
        "retriever_call_ms": float(np.median(bare_t)) * 1e3,
        "env_step_ms": float(np.median(step_t)) * 1e3,
        "overhead_ms": float(np.median(step_t - bare_t)) * 1e3,
        "overhead_share": float(np.median(shares)),
        "overhead_share_iqr": [float(q) for q in np.percentile(shares, [25, 75])],
        "env_own_ms": float(np.median(timed_t - inside_t)) * 1e3,
        "env_own_share": float(np.median((timed_t - inside_t) / timed_t)),
        "env_only_ms": float(np.median(replay_t)) * 1e3,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each corpus size, print one line per size and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=25, help="queries per timed block")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--backend", default="bm25s")
    parser.add_argument("--out", default="benchmarks/results/env_overhead.json")
    args = parser.parse_args(argv)
    if args.queries % args.block:
        parser.error("--queries must be a multiple of --block")

    host = machine()
    rows = [
        measure(n, args.queries, args.rounds, args.block, args.top_k, args.backend) for n in args.passages
    ]
    print(f"{host['cpu_model']}, {host['usable_cpus']} usable CPUs, Python {host['python']}")
    for row in rows:
        low, high = row["overhead_share_iqr"]
        print(
            f"{row['passages']:>9,} passages: retriever {row['retriever_call_ms']:.3f} ms, env step "
            f"{row['env_step_ms']:.3f} ms, overhead {row['overhead_ms']:.4f} ms = "
            f"{100 * row['overhead_share']:.1f}% of a search step (IQR {100 * low:.1f}-{100 * high:.1f}%, "
            f"target <= {100 * TARGET_SHARE:.0f}%); env's own time in the step {row['env_own_ms']:.4f} ms "
            f"= {100 * row['env_own_share']:.1f}%; warm env alone {row['env_only_ms']:.4f} ms; "
            f"load average {row['load_average_before'][0]:.2f} -> {row['load_average_after'][0]:.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(args.out, [json.dumps({"machine": host, "rows": rows}, indent=2)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
