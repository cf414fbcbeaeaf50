"""``make demo``: the whole loop on the bundled default task, on a CPU.

1. Build (or load) the factbook index and show a few numbers about the task.
2. Train the tiny model with SFT on oracle demonstrations (single-hop questions).
3. Continue it with NSR and with PPO, each from the SFT checkpoint.
4. Evaluate every agent, scripted and trained, on the test split with the leaderboard, and
   print its table and the paths of its plots.

Runs go to ``runs/demo`` and resume when the demo is started again; ``--fresh`` starts over.
The training settings are ``benchmarks.recipes``' tiny-model recipes.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.config import TrainConfig
from benchmarks import recipes
from searchenv.cli_errors import ArgumentParser, reports_errors
from searchenv.resources import shared_retriever, shared_task

# The leaderboard evaluates in the env the tiny model was trained in.
ENV_FLAGS = ("--hops", "1", "--snippet-chars", "200", "--max-turns", "4")
SCRIPTED = ("random", "bm25", "oracle", "spam-search", "repeat-query", "candidate-list")
RL_ALGOS = ("nsr", "ppo")


def train(cfg: TrainConfig) -> Path:
    """Run ``cfg`` as a ``python -m agents.train`` process, resuming a run started earlier."""
    out = Path(cfg.out)
    resume = (out / "checkpoints").exists()
    command = [
        sys.executable,
        "-m",
        "agents.train",
        *recipes.train_argv(dataclasses.replace(cfg, resume=resume)),
    ]
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"[demo] {out.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return out


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Train the demo's runs, then print the leaderboard of every agent."""
    parser = ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the training runs")
    parser.add_argument(
        "--results", type=Path, default=Path("runs/demo/leaderboard"), help="folder of the leaderboard"
    )
    parser.add_argument(
        "--max-questions", type=int, default=None, help="evaluate on a subset (default: all; 30 with --quick)"
    )
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs first")
    parser.add_argument(
        "--quick", action="store_true", help="a plumbing check: 4 SFT and 2 RL steps, 30 test questions"
    )
    args = parser.parse_args(argv)
    if args.max_questions is not None and args.max_questions < 1:
        parser.error(f"argument --max-questions: must be >= 1, got {args.max_questions}")
    for flag, folder in (("--out", args.out), ("--results", args.results)):
        if folder.exists() and not folder.is_dir():
            parser.error(f"argument {flag}: {folder} is a file, not a folder")

    started = time.perf_counter()
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    task = shared_task("factbook")
    retriever = shared_retriever(task.corpus, "bm25s")
    counts = ", ".join(f"{split} {len(qs)}" for split, qs in task.splits.items())
    print(
        f"[demo] factbook: {len(task.corpus):,} passages; questions {counts}; index {retriever.backend} ready"
    )

    sft_budget: dict[str, Any] = (
        {"steps": 4, "warmup_steps": 1, "save_every": 2} if args.quick else {"save_every": 60}
    )
    rl_budget = {"steps": 2, "save_every": 1} if args.quick else {"steps": 15, "save_every": 5}
    if args.quick:
        args.max_questions = args.max_questions or 30
    sft = train(recipes.tiny_sft(args.out / "sft", **sft_budget))
    trained = {algo: train(recipes.tiny_rl(args.out / algo, algo, sft, **rl_budget)) for algo in RL_ALGOS}

    from benchmarks import leaderboard

    agents = [*SCRIPTED, f"sft={sft}", *(f"{name}={path}" for name, path in trained.items())]
    leaderboard_args = ["--agents", *agents, *ENV_FLAGS, "--out", str(args.results), "--no-progress"]
    if args.max_questions:
        leaderboard_args += ["--max-questions", str(args.max_questions)]
    print("$ python -m benchmarks.leaderboard " + " ".join(leaderboard_args), flush=True)
    status = leaderboard.main(leaderboard_args)
    print(f"\n[demo] total wall time {(time.perf_counter() - started) / 60:.1f} min")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
