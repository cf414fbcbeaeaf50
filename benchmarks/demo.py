"""``make demo``: the whole loop on the bundled default task, on a CPU, SmolLM2 learning by RL.

1. Build (or load) the factbook index and show a few numbers about the task.
2. SFT of SmolLM2-135M on oracle demonstrations, in the short episodes of the CPU recipe
   (``benchmarks.recipes.smollm2_cpu_sft``, fewer steps).
3. GRPO from the SFT checkpoint on the cheap path: the top 4 layers on trunk states
   (``benchmarks.recipes.smollm2_cpu_rl``, fewer steps).
4. The leaderboard of every agent, scripted and trained, on test questions, with RL against
   SFT paired by question; its table, the difference with its 95% interval and its plots.

Every phase draws a progress bar with an ETA. Runs go to ``runs/demo`` and resume when the demo
is started again; ``--fresh`` starts over. ``--quick`` checks the plumbing with the 5M tiny model
(a few steps, 30 questions) instead.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agents.config import TrainConfig
from benchmarks import recipes
from searchenv.cli_errors import ArgumentParser, reports_errors
from searchenv.resources import shared_retriever, shared_task

SCRIPTED = ("random", "bm25", "oracle", "spam-search", "repeat-query", "candidate-list")
RL_ALGO = "grpo"
# The demo's budget on two cores (about 30 minutes in all; README "make demo").
SFT_STEPS, RL_STEPS, QUESTIONS = 10, 10, 60
QUICK_SFT_STEPS, QUICK_RL_STEPS, QUICK_QUESTIONS = 4, 2, 30


def env_flags(cfg: TrainConfig) -> list[str]:
    """The leaderboard's env options: those the policies were trained in."""
    flags = ["--hops", str(cfg.hops), "--max-turns", str(cfg.max_turns), "--top-k", str(cfg.top_k)]
    flags += ["--snippet-chars", str(cfg.snippet_chars), "--prompt", cfg.prompt]
    return flags + (["--read-chars", str(cfg.read_chars)] if cfg.read_chars else [])


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
        "--max-questions",
        type=int,
        default=None,
        help=f"test questions evaluated (default: {QUESTIONS}; {QUICK_QUESTIONS} with --quick)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs first")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a plumbing check with the tiny model: 4 SFT and 2 RL steps, 30 test questions",
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
    questions = args.max_questions or (QUICK_QUESTIONS if args.quick else QUESTIONS)
    if args.quick:
        sft_cfg = recipes.tiny_sft(args.out / "sft", steps=QUICK_SFT_STEPS, warmup_steps=1, progress=True)
        sft = train(sft_cfg)
        rl_cfg = recipes.tiny_rl(args.out / RL_ALGO, RL_ALGO, sft, steps=QUICK_RL_STEPS, progress=True)
    else:
        # The demo runs alone: each run may use both cores (the recipes' one thread is for runs
        # side by side).
        sft_cfg = recipes.smollm2_cpu_sft(args.out / "sft", steps=SFT_STEPS, threads=2, progress=True)
        sft = train(sft_cfg)
        rl_cfg = recipes.smollm2_cpu_rl(
            args.out / RL_ALGO,
            RL_ALGO,
            sft,
            steps=RL_STEPS,
            eval_every=0,
            save_every=RL_STEPS,
            threads=2,
            progress=True,
        )
    rl = train(rl_cfg)

    from benchmarks import leaderboard

    agents = [*SCRIPTED, f"sft={sft}", f"{RL_ALGO}={rl}"]
    leaderboard_args = ["--agents", *agents, *env_flags(sft_cfg), "--out", str(args.results)]
    leaderboard_args += ["--max-questions", str(questions), "--compare", RL_ALGO, "sft"]
    print("$ python -m benchmarks.leaderboard " + " ".join(leaderboard_args), flush=True)
    status = leaderboard.main(leaderboard_args)
    report_rl_against_sft(args.results / "results.json")
    print(f"\n[demo] total wall time {(time.perf_counter() - started) / 60:.1f} min")
    return status


def report_rl_against_sft(results: Path) -> None:
    """Print RL - SFT on EM, paired by question, from the leaderboard's results."""
    for comparison in json.loads(results.read_text(encoding="utf-8"))["comparisons"]:
        em = comparison["diff"]["em"]
        print(
            f"[demo] {comparison['a']} - {comparison['b']} on {comparison['task']}: EM {em['mean']:+.3f} "
            f"[{em['low']:+.3f}, {em['high']:+.3f}] (95% paired bootstrap over questions)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
