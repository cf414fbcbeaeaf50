"""Retrieval server throughput: in-process search against the HTTP server, side by side, one run.

    python -m benchmarks.bench_server [--passages 100000] [--clients 32] [--batch 32]

On a synthetic corpus (``tasks.synthetic``, 100k passages by default), bm25s, top-3 (the env's
and Search-R1's default), with the task's questions as queries:

- in-process: ``search`` one query at a time, and ``search_batch`` of ``--batch`` queries;
- HTTP (``searchenv serve`` in its own process, queried through the ``remote`` backend's
  keep-alive client): one query per request from one client and from ``--clients`` concurrent
  clients (threads), and batched requests of ``--batch`` queries from one and from 8 clients;
  plus one query per request through Search-R1's own client code (``requests.post``, a new
  connection per call, as in ``search_r1/llm_agent/generation.py``);
- env steps per second (search actions, ``max_turns=8``) in-process, with the remote backend,
  and with the env's retriever swapped for Search-R1's client.

Targets: the server answers 1,000+ queries/s with batched requests; the in-process env steps at
least 10x faster than through a Search-R1-style HTTP retriever. Client threads and the server
share the machine's cores, so wall-clock figures move with other jobs; each row also has the
CPU time per query of this process and of the server, which other jobs barely change.
Results: ``benchmarks/results/server.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_env import machine
from searchenv.env import SearchQAEnv
from searchenv.resources import shared_retriever
from searchenv.retrieval.base import Hit
from searchenv.retrieval.remote import RemoteRetriever
from searchenv.server.launch import ServerProcess, get_health
from tasks.records import Task
from tasks.storage import atomic_write_json, atomic_write_text
from tasks.synthetic import synthetic_task

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_BATCHED_QPS = 1_000
TARGET_ENV_RATIO = 10.0
TOP_K = 3


@dataclass(frozen=True)
class Row:
    """One measured setting. CPU figures are milliseconds per query (or per env step)."""

    side: str  # "in-process", "http" or "env"
    setting: str
    clients: int
    queries_per_call: int
    queries: int
    seconds: float
    per_second: float
    p50_ms: float  # per call: a request, a search_batch call or an env step
    cpu_ms: float  # this process (the clients, or the in-process search)
    server_cpu_ms: float | None = None
    search_calls: int | None = None  # the server's search_batch calls, for HTTP rows


class SearchR1Client:
    """Search-R1's retrieval call: one ``requests.post`` per batch, no session, so no keep-alive."""

    backend = "search-r1-client"

    def __init__(self, url: str) -> None:
        import requests  # not a dependency of the package: only this comparison uses it

        self._post = requests.post
        self.url = f"{url}/retrieve"

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` hits of one query."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` hits per query, in one request."""
        payload: dict[str, Any] = {"queries": list(queries), "topk": k, "return_scores": True}
        answer = self._post(self.url, json=payload, timeout=30).json()
        return [[Hit(item["document"]["id"], item["score"]) for item in row] for row in answer["result"]]


def _server_cpu(pid: int | None) -> float | None:
    """CPU seconds the server process has used (Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    side: str,
    setting: str,
    calls: Sequence[Callable[[], object]],
    n_queries: int,
    *,
    clients: int = 1,
    per_call: int = 1,
    server: ServerProcess | None = None,
) -> Row:
    """Run ``calls`` split over ``clients`` threads; wall time, latency and CPU per query."""
    pid = server.process.pid if server is not None and server.process is not None else None
    searches = get_health(server.host, server.port)["batching"]["batches"] if server else None
    shares = [calls[i::clients] for i in range(clients)]

    def play(share: Sequence[Callable[[], object]]) -> list[float]:
        latencies = []
        for call in share:
            started = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - started)
        return latencies

    server_before, cpu_before, wall_before = _server_cpu(pid), time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [latency for share in pool.map(play, shares) for latency in share]
    seconds = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    server_after = _server_cpu(pid)
    server_ms = None
    if server_before is not None and server_after is not None:
        server_ms = 1000 * (server_after - server_before) / n_queries
    if server is not None and searches is not None:
        searches = get_health(server.host, server.port)["batching"]["batches"] - searches
    return Row(
        side,
        setting,
        clients,
        per_call,
        n_queries,
        seconds,
        n_queries / seconds,
        1000 * float(np.median(latencies)),
        1000 * cpu / n_queries,
        server_ms,
        searches,
    )


def _batches(queries: Sequence[str], size: int) -> list[Sequence[str]]:
    return [queries[i : i + size] for i in range(0, len(queries), size)]


def search_calls(retriever: Any, queries: Sequence[str], per_call: int) -> list[Callable[[], object]]:
    """One closure per call of ``per_call`` queries."""
    if per_call == 1:
        return [partial(retriever.search, query, TOP_K) for query in queries]
    return [partial(retriever.search_batch, batch, TOP_K) for batch in _batches(queries, per_call)]


def env_calls(env: SearchQAEnv, queries: Sequence[str]) -> list[Callable[[], object]]:
    """One search step per query; a finished episode is reset inside the step's timing."""

    def step(query: str) -> None:
        _, _, terminated, truncated, _ = env.step({"tool": "search", "query": query})
        if terminated or truncated:
            env.reset()

    env.reset(seed=0)
    return [partial(step, query) for query in queries]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, in this process and one server process; returns the report."""
    load_before = os.getloadavg()
    task = synthetic_task(args.passages, seed=0, n_questions=min(2000, args.passages // 10))
    texts = [q.question for split in task.splits.values() for q in split]
    queries = [texts[i % len(texts)] for i in range(args.queries)]
    quarter = queries[: args.queries // 4]  # for the slowest settings
    server = ServerProcess(f"synthetic-{args.passages}", "bm25s", log=args.log)
    server.launch()
    local = shared_retriever(task.corpus, "bm25s")
    local.search_batch(queries[:64], TOP_K)  # warm caches and numba
    rows = [
        measure("in-process", "search, one query per call", search_calls(local, queries, 1), len(queries)),
        measure(
            "in-process",
            f"search_batch of {args.batch}",
            search_calls(local, queries, args.batch),
            len(queries),
            per_call=args.batch,
        ),
    ]
    health = server.wait_ready()
    try:
        client = RemoteRetriever(server.url, task.corpus)  # one client object, a connection per thread
        client.search_batch(queries[:64], TOP_K)
        http = [
            (1, 1, quarter),
            (args.clients, 1, queries),
            (1, args.batch, queries),
            (8, args.batch, queries),
        ]
        for clients, per_call, qs in http:
            kind = "one query per request" if per_call == 1 else f"{per_call} queries per request"
            calls = search_calls(client, qs, per_call)
            rows.append(
                measure("http", kind, calls, len(qs), clients=clients, per_call=per_call, server=server)
            )
        search_r1 = _search_r1_client(server.url)
        if search_r1 is not None:
            calls = search_calls(search_r1, quarter, 1)
            setting = "one query per request, Search-R1's client (requests.post)"
            rows.append(measure("http", setting, calls, len(quarter), server=server))
        rows += env_rows(task, server, search_r1, queries[: args.env_steps])
    finally:
        server.stop()
    return {
        "corpus": f"synthetic-{args.passages}",
        "passages": args.passages,
        "top_k": TOP_K,
        "server_index": health.get("index_digest"),
        "machine": {
            **machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": [asdict(row) for row in rows],
        "verdicts": verdicts(rows),
    }


def _search_r1_client(url: str) -> SearchR1Client | None:
    try:
        return SearchR1Client(url)
    except ImportError:
        print("requests is not installed: skipping the Search-R1 client rows")
        return None


def env_rows(
    task: Task, server: ServerProcess, search_r1: SearchR1Client | None, queries: Sequence[str]
) -> list[Row]:
    """Search steps of one env: in-process, remote backend, and (if available) Search-R1's client."""
    quarter = queries[: len(queries) // 4]
    local = SearchQAEnv(task=task, split="train", backend="bm25s", top_k=TOP_K)
    measure("env", "warm-up", env_calls(local, queries[:100]), 100)
    rows = [measure("env", "env.step (search), in-process bm25s", env_calls(local, queries), len(queries))]
    remote = SearchQAEnv(task=task, split="train", backend=server.url, top_k=TOP_K)
    setting = "env.step (search), through the remote backend"
    rows.append(measure("env", setting, env_calls(remote, quarter), len(quarter), server=server))
    if search_r1 is not None:
        swapped = SearchQAEnv(task=task, split="train", backend="bm25s", top_k=TOP_K)
        swapped.retriever = search_r1  # the env as Search-R1 would drive retrieval
        setting = "env.step (search), through Search-R1's client"
        rows.append(measure("env", setting, env_calls(swapped, quarter), len(quarter), server=server))
    return rows


def verdicts(rows: Sequence[Row]) -> dict[str, Any]:
    """The two targets, met or not, with the figures they rest on."""
    batched = max(row.per_second for row in rows if row.side == "http" and row.queries_per_call > 1)
    env = {row.setting.rsplit(", ", 1)[1]: row.per_second for row in rows if row.side == "env"}
    local = env["in-process bm25s"]
    ratios = {name: round(local / value, 2) for name, value in env.items() if name != "in-process bm25s"}
    return {
        "batched_http_qps": round(batched, 1),
        "batched_http_target_met": batched >= TARGET_BATCHED_QPS,
        "env_in_process_over_http": ratios,
        "env_ratio_target_met": {name: ratio >= TARGET_ENV_RATIO for name, ratio in ratios.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table plus the verdicts."""
    m, v = report["machine"], report["verdicts"]
    lines = [
        f"# Retrieval server: {report['corpus']}, bm25s, top-{report['top_k']}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs (shared), Python {m['python']}; "
        f"load average {m['load_average_before']} before, {m['load_average_after']} after. "
        "Client threads and the server share these cores. CPU columns: milliseconds per query "
        "(per step for env rows) of the benchmark process and of the server process.",
        "",
        "| side | setting | clients | queries/call | queries | s | queries/s | p50 ms/call "
        "| client CPU ms | server CPU ms | search calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        server = "" if r["server_cpu_ms"] is None else f"{r['server_cpu_ms']:.3f}"
        calls = "" if r["search_calls"] is None else f"{r['search_calls']:,}"
        lines.append(
            f"| {r['side']} | {r['setting']} | {r['clients']} | {r['queries_per_call']} | {r['queries']:,} "
            f"| {r['seconds']:.2f} | {r['per_second']:,.0f} | {r['p50_ms']:.3f} | {r['cpu_ms']:.3f} "
            f"| {server} | {calls} |"
        )
    met = {True: "met", False: "**missed**"}
    lines += [
        "",
        f"- Batched requests: {v['batched_http_qps']:,.0f} queries/s "
        f"(target {TARGET_BATCHED_QPS:,}: {met[v['batched_http_target_met']]}).",
    ]
    for name, ratio in v["env_in_process_over_http"].items():
        verdict = met[v["env_ratio_target_met"][name]]
        lines.append(
            f"- In-process env steps {ratio:.1f}x as fast as {name} "
            f"(target {TARGET_ENV_RATIO:.0f}x: {verdict})."
        )
    lines += [
        "",
        "`search calls` counts the server's `search_batch` calls: fewer calls than requests means "
        "concurrent requests were answered together by the micro-batcher.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write ``server.json`` and ``server.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=4096, help="queries per measured setting")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients of one-query requests")
    parser.add_argument("--batch", type=int, default=32, help="queries per batched call or request")
    parser.add_argument(
        "--env-steps", type=int, default=2000, help="env steps in-process (a quarter over HTTP)"
    )
    parser.add_argument("--log", default=None, help="file for the server's output")
    parser.add_argument("--out", default=str(RESULTS), help="folder for server.json and server.md")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    atomic_write_json(out / "server.json", report)
    atomic_write_text(out / "server.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
