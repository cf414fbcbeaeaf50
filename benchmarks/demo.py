"""``make demo``: the whole loop on the bundled default task, on a CPU.

1. Build (or load) the factbook index and show a few numbers about the task.
2. Train the tiny model with SFT on oracle demonstrations (single-hop questions).
3. Continue it with NSR and with PPO, each from the SFT checkpoint.
4. Evaluate every agent, scripted and trained, on the test split with the leaderboard, and
   print its table and the paths of its plots.

Runs go to ``runs/demo`` and resume when the demo is started again; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from searchenv.resources import shared_retriever, shared_task

# The env the tiny model is trained and evaluated in: single-hop questions, short snippets.
ENV_FLAGS = ("--hops", "1", "--snippet-chars", "200", "--max-turns", "4")
COMMON_TRAIN_FLAGS = (
    *ENV_FLAGS,
    "--model", "tiny",
    "--threads", "1",
    "--num-envs", "16",
    "--max-new-tokens", "32",
    "--no-progress",
)  # fmt: skip
SFT_FLAGS = (
    "--algo", "sft",
    "--steps", "240",
    "--lr", "0.003",
    "--lr-schedule", "cosine",
    "--warmup-steps", "20",
    "--sft-batch-size", "8",
    "--save-every", "60",
)  # fmt: skip
RL_FLAGS = {
    "nsr": ("--algo", "nsr", "--steps", "15", "--lr", "0.0001", "--kl-coef", "0.0", "--save-every", "5"),
    "ppo": ("--algo", "ppo", "--steps", "15", "--lr", "0.0001", "--kl-coef", "0.05", "--save-every", "5"),
}
SCRIPTED = ("random", "bm25", "oracle", "spam-search", "repeat-query", "candidate-list")


def run(command: Sequence[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def train(name: str, flags: Sequence[str], out_root: Path, init: Path | None) -> Path:
    out = out_root / name
    command = [sys.executable, "-m", "agents.train", *COMMON_TRAIN_FLAGS, *flags, "--out", str(out)]
    if init is not None:
        command += ["--init", str(init)]
    if (out / "checkpoints").exists():
        command.append("--resume")
    started = time.perf_counter()
    run(command)
    print(f"[demo] {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--results", type=Path, default=Path("runs/demo/leaderboard"))
    parser.add_argument("--max-questions", type=int, default=None, help="evaluate on a subset")
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs first")
    parser.add_argument(
        "--quick", action="store_true", help="a plumbing check: 4 SFT and 2 RL steps, 30 test questions"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    task = shared_task("factbook")
    retriever = shared_retriever(task.corpus, "bm25s")
    counts = ", ".join(f"{split} {len(qs)}" for split, qs in task.splits.items())
    print(
        f"[demo] factbook: {len(task.corpus):,} passages; questions {counts}; index {retriever.backend} ready"
    )

    sft_flags, rl_flags = SFT_FLAGS, RL_FLAGS
    if args.quick:
        sft_flags = (*SFT_FLAGS, "--steps", "4", "--warmup-steps", "1", "--save-every", "2")
        rl_flags = {name: (*flags, "--steps", "2", "--save-every", "1") for name, flags in RL_FLAGS.items()}
        args.max_questions = args.max_questions or 30
    sft = train("sft", sft_flags, args.out, init=None)
    trained = {name: train(name, flags, args.out, init=sft) for name, flags in rl_flags.items()}

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
