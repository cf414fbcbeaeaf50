"""The command line of ``python -m benchmarks.leaderboard``: options, defaults, each task's run config."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from benchmarks.evaluation import RunConfig
from searchenv.cli_errors import ArgumentParser
from tasks.dataset import DatasetSpecError, add_dataset_options, dataset_from_args, task_arguments


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.leaderboard``; every option says its default."""
    parser = ArgumentParser(
        prog="python -m benchmarks.leaderboard",
        description="Evaluate agents on held-out questions and write a leaderboard.",
    )
    parser.add_argument(
        "--agents", nargs="+", required=True, help="scripted names, checkpoint paths or LABEL=PATH"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["factbook"],
        help="factbook, synthetic, or jsonl with the dataset options below",
    )
    parser.add_argument(
        "--split", default="test", choices=["train", "dev", "test"], help="questions of this split"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="policy and reset seeds (distinct)")
    parser.add_argument(
        "--samples-per-question", type=int, default=1, help="n per seed; pass@k uses seeds x n"
    )
    parser.add_argument(
        "--max-questions", type=int, default=None, help="a fixed random subset of M questions (default: all)"
    )
    parser.add_argument("--num-envs", type=int, default=8, help="envs stepped side by side per agent")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of checkpoints played in this process; use 1 beside other jobs, "
        "whose cores spinning threads would fight for (default: torch's choice)",
    )
    for flag, text in (
        ("--max-turns", "turn budget per episode"),
        ("--top-k", "passages per search"),
        ("--snippet-chars", "characters per search snippet"),
    ):
        default = env_default(flag[2:].replace("-", "_"))
        parser.add_argument(flag, type=int, default=None, help=f"{text} (default: the env's, {default})")
    parser.add_argument(
        "--read-chars",
        type=int,
        default=None,
        help="characters a read returns, around the last query's words (default: the whole passage)",
    )
    parser.add_argument(
        "--prompt",
        choices=["full", "short"],
        default=None,
        help="the env's reset prompt; checkpoints trained on the short one need it (default: full)",
    )
    parser.add_argument(
        "--hops", type=int, default=None, help="keep only questions with this hop count (default: all)"
    )
    parser.add_argument(
        "--reward-preset",
        default=None,
        help=f"reward preset (default: the env's, {env_default('reward_preset')})",
    )
    parser.add_argument(
        "--backend",
        default=None,
        help=f"retrieval backend or server URL (default: the env's, {env_default('backend')})",
    )
    parser.add_argument(
        "--decoding",
        choices=["auto", "greedy", "sample"],
        default="auto",
        help="checkpoints: auto = greedy for one sample per question in all, else sampling",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of checkpoints")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where checkpoints run: auto = CUDA when there is a GPU, else the CPU; cuda without one "
        "is an error",
    )
    parser.add_argument(
        "--ray-actors",
        type=int,
        default=0,
        help="play on this many Ray actors (pip install -e .[ray]); 0 = in this process. Deterministic "
        "agents play the same episodes; sampling ones draw per-chunk seeds (agents.distributed)",
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=2000, help="bootstrap resamples of every interval"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/leaderboard"),
        help="folder of results and tables",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        default=None,
        help="paired A - B on EM, F1 and reward; repeat for more pairs (default: none)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_dataset_options(parser)
    return parser


def env_default(name: str) -> Any:
    """The value an env argument takes when none is given (``--help`` and the table name it)."""
    import inspect

    from searchenv.env import SearchQAEnv

    return inspect.signature(SearchQAEnv.__init__).parameters[name].default


def task_configs(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: RunConfig
) -> dict[str, RunConfig]:
    """Each task's run configuration: a jsonl task carries its dataset as ``task_kwargs``."""
    try:
        dataset = dataset_from_args(args)
        if dataset is not None and "jsonl" not in args.tasks:
            raise DatasetSpecError("dataset options apply to the jsonl task: add jsonl to --tasks")
        configs = {}
        for task in args.tasks:
            _, task_kwargs = task_arguments(task, dataset if task == "jsonl" else None)
            env_kwargs = (
                {**config.env_kwargs, "task_kwargs": task_kwargs} if task_kwargs else config.env_kwargs
            )
            configs[task] = dataclasses.replace(config, env_kwargs=env_kwargs)
    except ValueError as error:
        parser.error(str(error))
    return configs


def check_tasks(args: argparse.Namespace, configs: dict[str, RunConfig]) -> None:
    """Each task has questions in the split (after --hops) and the backend exists.

    Loads the tasks (which the evaluation reuses) but no index: a mistake fails in a second.
    Checkpoints are only reached through ``load_policy``, when their pair is played.
    """
    from searchenv.cli_errors import check_backend, user_input
    from searchenv.questions import select_questions

    with user_input():
        if args.backend is not None:
            check_backend(args.backend)
        for task, config in configs.items():
            select_questions(
                task, args.split, hops=args.hops, task_kwargs=config.env_kwargs.get("task_kwargs")
            )


__all__ = ["build_parser", "check_tasks", "env_default", "task_configs"]
