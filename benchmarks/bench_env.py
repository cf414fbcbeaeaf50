"""Env overhead: a search step through the env against the bare retriever call it wraps.

    python -m benchmarks.bench_env --passages 100000

Both loops run in this process on the same queries, interleaved in rounds, and are timed in
CPU time of this process, so that other jobs on the shared cores inflate neither.
Overhead = (env step - retriever call) / env step; the target is < 20% at 100k passages.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searchenv.env import SearchQAEnv
from searchenv.resources import shared_retriever
from tasks.records import atomic_write_lines


def _time_per_call(fn, items: Sequence[str]) -> float:
    # CPU time of this process: other jobs on the shared cores do not inflate it.
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items)


def measure(n_passages: int, n_queries: int, rounds: int, top_k: int, backend: str) -> dict[str, float]:
    from tasks.synthetic import synthetic_task

    task = synthetic_task(n_passages=n_passages, seed=0)
    retriever = shared_retriever(task.corpus, backend)
    env = SearchQAEnv(task=task, split="train", backend=backend, max_turns=10**9, top_k=top_k)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    all_questions = [q.question for qs in task.splits.values() for q in qs]
    queries = [all_questions[i] for i in rng.integers(len(all_questions), size=n_queries)]
    retriever.search(queries[0], top_k)  # warm-up: numba compiles on the first query

    bare, stepped = [], []
    for _ in range(rounds):
        bare.append(_time_per_call(lambda q: retriever.search(q, top_k), queries))
        stepped.append(_time_per_call(lambda q: env.step({"tool": "search", "query": q}), queries))
    bare_s, step_s = float(np.median(bare)), float(np.median(stepped))
    return {
        "passages": n_passages,
        "backend": backend,
        "top_k": top_k,
        "queries_per_round": n_queries,
        "rounds": rounds,
        "retriever_call_ms": bare_s * 1e3,
        "env_step_ms": step_s * 1e3,
        "overhead_ms": (step_s - bare_s) * 1e3,
        "overhead_share": (step_s - bare_s) / step_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--backend", default="bm25s")
    parser.add_argument("--out", default="benchmarks/results/env_overhead.json")
    args = parser.parse_args(argv)

    rows = [measure(n, args.queries, args.rounds, args.top_k, args.backend) for n in args.passages]
    for row in rows:
        print(
            f"{row['passages']:>9,} passages  retriever {row['retriever_call_ms']:.3f} ms  "
            f"env step {row['env_step_ms']:.3f} ms  overhead {row['overhead_ms']:.3f} ms "
            f"({100 * row['overhead_share']:.1f}% of a search step; target < 20%)"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(args.out, [json.dumps(rows, indent=2)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
