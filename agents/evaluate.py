"""Evaluate a policy's weights: during training (fixed dev questions) and from a checkpoint.

python -m agents.evaluate --checkpoint runs/sft --split test --hops 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents import checkpoint as ckpt
from agents.config import config_from_dict
from agents.device import DEVICES, machine_description, resolve_device, torch_module
from agents.weights import load_policy, resolve_checkpoint
from searchenv.cli_errors import ArgumentParser, UsageError, reports_errors, user_input

if TYPE_CHECKING:
    from agents.learner import Run


def quiet_transformers() -> None:
    """Transformers draws a progress bar per save and load; one bar per run is enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def evaluate_model(run: Run, step: int) -> dict[str, float]:
    """Greedy EM, mean reward and searches of the current weights on the fixed evaluation questions."""
    from agents.rollout import run_episodes, summarize
    from agents.update import make_policy

    cfg = run.cfg
    run.learner.model.eval()
    policy = make_policy(run, seed=cfg.seed, greedy=True)
    with torch_module().no_grad():
        results = run_episodes(
            policy,
            cfg.env_kwargs(cfg.eval_split),
            question_ids=run.eval_question_ids,
            num_envs=cfg.num_envs,
            seed=cfg.seed,
            progress=False,
        )
    summary = summarize(results)
    return {"em": summary["em"], "reward": summary["reward"], "searches": summary["searches"]}


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    *,
    hops: int | None = -1,
    kinds: Sequence[str] | None = None,
    episodes: int | None = None,
    greedy: bool = True,
    num_envs: int = 8,
    seed: int = 0,
    progress: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """EM (with a 95% bootstrap interval), reward and search behaviour of a checkpoint.

    Task, reward preset, turn budget and (unless ``hops`` is given; ``-1`` means "as trained")
    the hop filter come from the checkpoint's config. Every matching question of ``split`` is
    played once, or ``episodes`` of them (a seeded subset).
    """
    from agents.rollout import run_episodes, summarize
    from searchenv.metrics import bootstrap_ci
    from searchenv.questions import sample_question_ids, select_questions

    quiet_transformers()
    checkpoint = resolve_checkpoint(path)
    config = config_from_dict(ckpt.read_state(checkpoint)["config"])
    chosen_hops = config.hops if hops == -1 else hops
    config = dataclasses.replace(config, hops=chosen_hops, kinds=",".join(kinds) if kinds else config.kinds)
    questions = select_questions(
        config.task, split, hops=config.hops, kinds=config.kind_list, task_kwargs=config.task_kwargs
    )
    ids = sample_question_ids(questions, episodes, seed)
    policy = load_policy(checkpoint, greedy=greedy, seed=seed, device=device)
    with torch_module().no_grad():
        results = run_episodes(
            policy,
            config.env_kwargs(split),
            question_ids=ids,
            num_envs=num_envs,
            seed=seed,
            progress=progress,
        )
    summary = summarize(results)
    em = bootstrap_ci([float(r.correct) for r in results], seed=seed)
    reward = bootstrap_ci([r.reward for r in results], seed=seed)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "hops": config.hops,
        "n": len(results),
        "em": em.mean,
        "em_ci95": [em.low, em.high],
        "reward": reward.mean,
        "reward_ci95": [reward.low, reward.high],
        **{k: v for k, v in summary.items() if k not in ("em", "reward", "episodes")},
        "machine": machine_description(resolve_device(device)),
    }


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m agents.evaluate`` command line."""
    parser = ArgumentParser(
        prog="python -m agents.evaluate", description=(evaluate_checkpoint.__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, or a run folder (latest checkpoint)"
    )
    parser.add_argument("--split", default="test", help="split to evaluate on")
    parser.add_argument("--hops", type=int, default=-1, help="hop filter (-1: as trained; 0: all)")
    parser.add_argument("--kinds", default=None, help="comma-separated question kinds (default: as trained)")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="play a seeded subset of this many questions (default: all)",
    )
    parser.add_argument(
        "--sample", action="store_true", help="sample (temperature 1) instead of greedy decoding"
    )
    parser.add_argument("--num-envs", type=int, default=8, help="envs stepped side by side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset, the resets and sampling")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: CUDA when there is a GPU, else the CPU"
    )
    parser.add_argument("--json", default=None, help="also write the result to this file (default: none)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar"
    )
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Fail in a second, before torch loads, on what the command line names but is not there."""
    from searchenv.questions import select_questions

    for name, low in (("episodes", 1), ("num_envs", 1), ("hops", -1), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    config = config_from_dict(ckpt.read_state(checkpoint)["config"])
    hops = config.hops if args.hops == -1 else (None if args.hops == 0 else args.hops)
    kinds = args.kinds.split(",") if args.kinds else config.kind_list
    select_questions(config.task, args.split, hops=hops, kinds=kinds, task_kwargs=config.task_kwargs)
    if args.device == "cuda":
        resolve_device(args.device)


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate a checkpoint and print (and optionally write) the result as JSON."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with user_input():  # a user's mistake: one line, exit 2 (searchenv.cli_errors)
        check_arguments(args)
    if args.threads:
        torch_module().set_num_threads(args.threads)
    result = evaluate_checkpoint(
        args.checkpoint,
        args.split,
        hops=None if args.hops == 0 else args.hops,
        kinds=args.kinds.split(",") if args.kinds else None,
        episodes=args.episodes,
        greedy=not args.sample,
        num_envs=args.num_envs,
        seed=args.seed,
        progress=args.progress,
        device=args.device,
    )
    print(json.dumps(result, indent=2))
    if args.json:
        ckpt.atomic_write_json(Path(args.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
