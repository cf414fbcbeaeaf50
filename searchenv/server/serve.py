"""``searchenv serve``: serve a task's index over HTTP in Search-R1's retrieval protocol.

    searchenv serve --task factbook --backend bm25s --port 8000 [--host 127.0.0.1] [--top-k-max 100]

``searchenv.cli`` calls :func:`add_serve_command`; FastAPI and uvicorn are imported only when the
command runs, so the rest of the CLI works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
from typing import Any

from searchenv.retrieval.cache import BACKENDS
from searchenv.server.protocol import SEARCH_R1_DEFAULT_TOPK, ServerLimits


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to a ``subparsers`` object; its handler is :func:`run_serve`."""
    parser = subparsers.add_parser(
        "serve", help="serve a task's index over HTTP (Search-R1's /retrieve protocol)"
    )
    parser.add_argument(
        "--task", default="factbook", help="factbook (default), synthetic-100k, ..., or jsonl with a dataset"
    )
    parser.add_argument("--backend", default="bm25s", choices=sorted(BACKENDS))
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--top-k", type=int, default=SEARCH_R1_DEFAULT_TOPK, help="topk of requests that send none"
    )
    parser.add_argument("--top-k-max", type=int, default=ServerLimits.top_k_max, help="largest topk accepted")
    parser.add_argument(
        "--max-queries", type=int, default=ServerLimits.max_queries, help="queries (or ids) per request"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=ServerLimits.max_body_bytes, help="largest request body"
    )
    parser.add_argument("--max-batch", type=int, default=256, help="queries per batched search call")
    parser.add_argument("--max-wait-ms", type=float, default=1.5, help="how long a request waits for a batch")
    parser.add_argument("--threads", type=int, default=1, help="threads of batched search (bm25s)")
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    parser.add_argument(
        "--cache-dir", default=None, help="index folder root (default $SEARCHENV_HOME/indexes)"
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level")
    from tasks.dataset import add_dataset_options

    add_dataset_options(parser)
    parser.set_defaults(handler=run_serve)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """Load the task and its index (building it if needed), then serve until interrupted."""
    try:
        limits = ServerLimits(args.top_k, args.top_k_max, args.max_queries, args.max_body_bytes)
    except ValueError as error:
        raise SystemExit(f"searchenv serve: {error}") from None
    try:  # fail before loading anything when the server extra is missing
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise SystemExit(
            f"searchenv serve needs FastAPI and uvicorn ({error}): pip install -e .[server]"
        ) from None
    from searchenv.index_cli import load_task_by_name
    from searchenv.retrieval.cache import load_retriever
    from searchenv.server.app import create_app

    task = load_task_by_name(args.task, args)
    retriever = load_retriever(
        task.corpus, args.backend, k1=args.k1, b=args.b, cache_dir=args.cache_dir, threads=args.threads
    )
    app = create_app(task, retriever, limits=limits, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    print(
        f"serving {args.task} ({len(task.corpus):,} passages, {args.backend}) on "
        f"http://{args.host}:{args.port}  (POST /retrieve, POST /read, GET /health)",
        flush=True,
    )
    # Keep-alive well past uvicorn's 5 s: RL clients idle between generations; the remote
    # backend reconnects anyway when a kept connection was closed.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, timeout_keep_alive=60
    )
    return 0
