"""``searchenv``: play an episode in a terminal, build and inspect indexes, or serve one.

searchenv play [--split test] [--question-id ID] [--seed N] [--task jsonl --dataset SPEC.json]
searchenv index build --task factbook --backend bm25s
searchenv index info --task factbook --backend bm25s
searchenv serve --task factbook --backend bm25s --port 8000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from searchenv.cli_errors import ArgumentParser, UsageError, check_backend, reports_errors, user_input

SHORTHANDS = {"s": "search", "r": "read", "a": "answer"}

PLAY_HELP = """Type an action and press Enter:
  s <query>    search          r <doc id>   read          a <answer>   answer
  or raw text such as <search>capital of France</search>.  'quit' ends the game."""


def _to_action(line: str) -> str:
    """Expand the terminal shorthands; anything else is passed through as raw text.

    >>> _to_action("s capital of France")
    '<search>capital of France</search>'
    >>> _to_action("<answer>Paris</answer>")
    '<answer>Paris</answer>'
    """
    head, _, rest = line.strip().partition(" ")
    if head in SHORTHANDS and rest.strip():
        tool = SHORTHANDS[head]
        return f"<{tool}>{rest.strip()}</{tool}>"
    return line


def play(args: argparse.Namespace, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Play one episode in a terminal: read actions from ``stdin``, print observations."""
    import gymnasium as gym

    import searchenv  # noqa: F401
    from tasks.dataset import dataset_from_args, task_arguments

    with user_input():  # every name checked before the index loads
        task, task_kwargs = task_arguments(args.task, dataset_from_args(args))
        check_backend(args.backend)
        if args.max_turns < 1:
            raise UsageError(f"--max-turns must be >= 1, got {args.max_turns}")
        _check_question(task, task_kwargs, args.split, args.question_id)
        env = gym.make(
            args.env_id,
            task=task,
            task_kwargs=task_kwargs or None,
            split=args.split,
            backend=args.backend,
            max_turns=args.max_turns,
            render_mode="ansi",
        )
        options = {"question_id": args.question_id} if args.question_id else None
        observation, info = env.reset(seed=args.seed, options=options)
    choice = getattr(getattr(getattr(env.unwrapped, "retriever", None), "load_info", None), "choice", None)
    if choice is not None:  # --backend auto: say which backend it picked
        print(choice, file=sys.stderr)
    print(PLAY_HELP, file=stdout)
    print(f"\n{observation}\n", file=stdout)
    total = 0.0
    while True:
        stdout.write(f"[turn {info['turn'] + 1}/{info['turn'] + info['turns_left']}] > ")
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip().lower() in {"quit", "exit"}:
            print("\nGame abandoned.", file=stdout)
            return 1
        if not line.strip():
            continue
        observation, reward, terminated, truncated, info = env.step(_to_action(line.rstrip("\n")))
        total += float(reward)
        print(f"\n{observation}\n", file=stdout)
        if terminated or truncated:
            ending = "answered" if terminated else "out of turns"
            print(f"Episode over ({ending}). Gold answers: {', '.join(info['answers'])}", file=stdout)
            print(f"Correct: {info['correct']}   reward: {total:.3f}", file=stdout)
            for name, value in info["reward_breakdown"].items():
                print(f"  {name:<12} {value:.3f}", file=stdout)
            return 0


def _check_question(task_name: str, task_kwargs: dict, split: str, question_id: str | None) -> None:
    """Load the task and check its split (and question id, naming the split that holds it)."""
    from searchenv.questions import splits_holding
    from searchenv.resources import shared_task

    task = shared_task(task_name, **task_kwargs)
    questions = task.questions(split)
    if question_id is None or split in (holding := splits_holding(task, question_id)):
        return
    if holding:
        raise UsageError(
            f"question {question_id!r} is in the {holding[0]!r} split of {task.name}, not {split!r}: "
            f"add --split {holding[0]}"
        )
    raise UsageError(
        f"{task.name} has no question {question_id!r} in any split (ids look like {questions[0].qid!r}); "
        "leave --question-id out for a random one"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``searchenv`` command line: ``play``, ``index`` and ``serve``."""
    parser = ArgumentParser(prog="searchenv", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    play_parser = commands.add_parser("play", help="play one episode in the terminal")
    play_parser.add_argument("--env-id", default="SearchQA-v0", help="registered env id")
    play_parser.add_argument(
        "--task", default="factbook", help="factbook, synthetic, or jsonl with a dataset"
    )
    play_parser.add_argument(
        "--split", default="test", choices=["train", "dev", "test"], help="question split"
    )
    play_parser.add_argument("--backend", default="bm25s", help="retrieval backend or server URL")
    play_parser.add_argument("--max-turns", type=int, default=8, help="turn budget")
    play_parser.add_argument("--question-id", default=None, help="ask this question (default: a random one)")
    play_parser.add_argument("--seed", type=int, default=None, help="reset seed (picks the question)")
    from tasks.dataset import add_dataset_options

    add_dataset_options(play_parser)
    play_parser.set_defaults(handler=play)

    from searchenv.index_cli import add_index_commands

    add_index_commands(commands)

    from searchenv.server.serve import add_serve_command

    add_serve_command(commands)
    return parser


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``searchenv`` command; returns the exit code (``searchenv.cli_errors``)."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
