"""``searchenv serve``: serve a task's index over HTTP in Search-R1's retrieval protocol.

    searchenv serve --task factbook --backend bm25s --port 8000 [--host 127.0.0.1] [--top-k-max 100]

``searchenv.cli`` calls :func:`add_serve_command`; FastAPI and uvicorn are imported only when the
command runs, so the rest of the CLI works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import errno
import socket
from typing import Any

from searchenv.cli_errors import CommandError, UsageError, port_number, user_input
from searchenv.retrieval.cache import BACKEND_CHOICES
from searchenv.server.protocol import SEARCH_R1_DEFAULT_TOPK, ServerLimits


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to a ``subparsers`` object; its handler is :func:`run_serve`."""
    parser = subparsers.add_parser(
        "serve", help="serve a task's index over HTTP (Search-R1's /retrieve protocol)"
    )
    parser.add_argument(
        "--task", default="factbook", help="factbook (default), synthetic-100k, ..., or jsonl with a dataset"
    )
    parser.add_argument("--backend", default="bm25s", choices=sorted(BACKEND_CHOICES))
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all)")
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port, 1-65535 (0: any free one)")
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
    """Bind the port (failing at once when it is taken), load the task and its index, serve."""
    with user_input():
        limits = ServerLimits(args.top_k, args.top_k_max, args.max_queries, args.max_body_bytes)
        for name in ("max_batch", "threads"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.max_wait_ms < 0:
            raise UsageError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    try:  # fail before loading anything when the server extra is missing
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise CommandError(
            f"searchenv serve needs FastAPI and uvicorn ({error}): pip install -e .[server]"
        ) from None
    from searchenv.index_cli import load_task_by_name
    from searchenv.retrieval.cache import load_retriever
    from searchenv.server.app import create_app

    sock = bind_socket(args.host, args.port)
    try:
        task = load_task_by_name(args.task, args)
        retriever = load_retriever(
            task.corpus, args.backend, k1=args.k1, b=args.b, cache_dir=args.cache_dir, threads=args.threads
        )
        app = create_app(
            task, retriever, limits=limits, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
        )
        sock.listen(2048)  # from here a client's connection waits for uvicorn instead of failing
        print(
            f"serving {args.task} ({len(task.corpus):,} passages, {args.backend}) on "
            f"{socket_url(sock)}  (POST /retrieve, POST /read, GET /health)",
            flush=True,
        )
        # Keep-alive well past uvicorn's 5 s: RL clients idle between generations; the remote
        # backend reconnects anyway when a kept connection was closed.
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_keep_alive=60,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening; uvicorn listens on it).

    Raises:
        UsageError: ``host`` is not an address of this machine.
        CommandError: the port is taken, or binding it is not permitted.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(
            f"--host {host!r} is not a host name or address ({error}): use 127.0.0.1 (this machine "
            "only) or 0.0.0.0 (every interface)"
        ) from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses its port at once
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        where = f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is taken (another server is listening there): stop it, or "
                "choose another --port (--port 0 takes any free one)"
            ) from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"--host {host!r} is not an address of this machine: use 127.0.0.1 (this machine only) "
                "or 0.0.0.0 (every interface)"
            ) from None
        if error.errno == errno.EACCES:
            raise CommandError(
                f"binding {where} is not permitted (ports below 1024 need privileges): choose a --port "
                "from 1024 to 65535"
            ) from None
        raise CommandError(f"cannot bind {where}: {error.strerror}") from None
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of the address a socket is bound to (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
