"""``searchenv index build|info``: build an index into the cache, or verify and show a cached one.

The lead's ``searchenv.cli`` calls :func:`add_index_commands`; each subcommand stores its
function as ``handler`` (called with the parsed args, returns an exit code). Run standalone with
``python -m searchenv.index_cli build --task synthetic-100k``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from searchenv.cli_errors import ArgumentParser, reports_errors, user_input
from searchenv.retrieval.auto import resolve_backend
from searchenv.retrieval.cache import BACKEND_CHOICES, ensure_index, index_status
from searchenv.retrieval.integrity import IndexCorruptError


def load_task_by_name(name: str, args: argparse.Namespace | None = None) -> Any:
    """``tasks.load_task(name)``, sized synthetic names ("synthetic-100k") and jsonl datasets.

    A ``jsonl`` task takes its files from the dataset options of ``args`` (``tasks.dataset``).
    """
    from tasks import load_task
    from tasks.dataset import dataset_from_args, task_arguments
    from tasks.synthetic import parse_synthetic_name

    with user_input():  # an unknown task or bad dataset options: a one-line error, exit 2
        name, task_kwargs = task_arguments(name, dataset_from_args(args) if args is not None else None)
        n_passages = parse_synthetic_name(name)
        if n_passages is not None:
            return load_task("synthetic", n_passages=n_passages)
        return load_task(name, **task_kwargs)


def add_index_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``index build`` and ``index info`` to a ``subparsers`` object; returns the index parser."""
    index_parser = subparsers.add_parser("index", help="build or inspect retrieval indexes")
    commands = index_parser.add_subparsers(dest="index_command", required=True)

    build = commands.add_parser("build", help="build (or load) the index of a task's corpus")
    _add_common_options(build)
    build.add_argument("--rebuild", action="store_true", help="rebuild even if a valid index is cached")
    build.add_argument("--threads", type=int, default=1, help="threads for indexing / batched search")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.set_defaults(handler=run_index_build)

    info = commands.add_parser(
        "info",
        help="verify a task's cached index (every file hashed) and print its meta.json; exit 2 if corrupt",
    )
    _add_common_options(info)
    info.set_defaults(handler=run_index_info)
    return index_parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        default="factbook",
        help="task name: factbook (default), synthetic, synthetic-100k, ..., or jsonl with --dataset or "
        "--corpus and --questions",
    )
    from tasks.dataset import add_dataset_options

    add_dataset_options(parser)
    parser.add_argument(
        "--backend",
        default="bm25s",
        choices=sorted(BACKEND_CHOICES),
        help="retrieval backend; auto picks the fastest measured for the corpus size and says which",
    )
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    parser.add_argument(
        "--cache-dir", default=None, help="index folder root (default $SEARCHENV_HOME/indexes)"
    )


def _resolve_auto(args: argparse.Namespace, n_docs: int) -> None:
    """Replace ``--backend auto`` by the backend it picks for this corpus, and say which on stderr."""
    args.backend, choice = resolve_backend(args.backend, n_docs)
    if choice is not None:
        print(choice, file=sys.stderr)


def run_index_build(args: argparse.Namespace) -> int:
    """Build (or find cached and verified) the index of a task for a backend and print where it is.

    A cached index is hashed in full first; a corrupt one is rebuilt, and the output says so.
    """
    task = load_task_by_name(args.task, args)
    _resolve_auto(args, len(task.corpus))
    start = time.perf_counter()
    status = (
        None
        if args.rebuild
        else index_status(task.corpus, args.backend, k1=args.k1, b=args.b, cache_dir=args.cache_dir)
    )
    if status is not None and status.state == "valid" and status.meta is not None:
        folder, meta, verb = status.folder, dict(status.meta), "found cached (checksums verified)"
    else:
        if status is not None and status.state == "corrupt":
            print(
                f"the cached index at {status.folder} is corrupt "
                f"({'; '.join(status.problems)}): rebuilding it",
                file=sys.stderr,
            )
        folder, meta, _ = ensure_index(
            task.corpus,
            args.backend,
            k1=args.k1,
            b=args.b,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            rebuild=args.rebuild or (status is not None and status.state == "corrupt"),
            threads=args.threads,
        )
        verb = "rebuilt" if status is None or status.state == "corrupt" else "built"
    print(
        f"{verb} {args.backend} index of {args.task} ({len(task.corpus)} passages) "
        f"in {time.perf_counter() - start:.1f}s at {folder}",
        file=sys.stderr,
    )
    print(json.dumps({**meta, "path": str(folder)}, indent=2, sort_keys=True))
    return 0


def run_index_info(args: argparse.Namespace) -> int:
    """Print a task's cached index meta after hashing every file; builds nothing.

    Exit code 0 for a valid index, 1 when there is none, 2 when it is corrupt (the meta is still
    printed, with ``state`` and ``problems``).
    """
    task = load_task_by_name(args.task, args)
    _resolve_auto(args, len(task.corpus))
    status = index_status(task.corpus, args.backend, k1=args.k1, b=args.b, cache_dir=args.cache_dir)
    if status.state == "corrupt":
        error = IndexCorruptError(status.folder, args.backend, status.problems)
        print(f"error: {error.summary}. {error.fix(args.task)}", file=sys.stderr)
        report = {**(status.meta or {}), "path": str(status.folder), "state": status.state}
        print(json.dumps({**report, "problems": list(status.problems)}, indent=2, sort_keys=True))
        return 2
    if status.state != "valid":
        why = "an incomplete build (no usable meta.json)" if status.state == "incomplete" else "no"
        print(
            f"error: {why} {args.backend} index of {args.task} (k1={args.k1}, b={args.b}) "
            f"at {status.folder}; "
            f"run: searchenv index build --task {args.task} --backend {args.backend}",
            file=sys.stderr,
        )
        return 1
    print(
        json.dumps(
            {**(status.meta or {}), "path": str(status.folder), "state": "valid"}, indent=2, sort_keys=True
        )
    )
    return 0


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m searchenv.index_cli``; returns the exit code."""
    parser = ArgumentParser(prog="python -m searchenv.index_cli")
    add_index_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["index", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
