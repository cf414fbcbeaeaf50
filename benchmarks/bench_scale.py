"""Retrieval at scale: build time, disk, load time, RSS after load, latency, for bm25s and pyserini.

    nice -n 19 python -m benchmarks.bench_scale --sizes 1m,3m --backends bm25s,bm25s_pruned,pyserini

For each synthetic corpus size (``tasks.synthetic``) and backend, two fresh worker processes run
one after the other: *build* (generate the corpus, build the index into a work folder, time it,
sample peak RSS) and *serve* (generate the corpus again, open the index as the env would, with
mmap for bm25s and Lucene's mmap directory for pyserini, then time 1,000 queries one by one and
as one batch, one thread). Separate processes keep the build's garbage out of the RSS after load.

Resumable per size and backend: every finished phase is written at once to the JSON report
(atomically, ``tasks.storage.atomic_write_json``), a rerun skips what the report already holds and
reuses an index the build phase left in the work folder. The Markdown table is rewritten each time.
``--remeasure`` measures the named sizes and backends again (the earlier rows move to
``superseded``), so backends can be compared within one session: every row records its session,
and the report gives each session's ratios against Lucene (pyserini) measured in that session.

Memory guard: before each worker the script estimates its peak RSS (linearly from the largest
measured size, else from a conservative prior) and refuses to start it when that estimate plus a
margin exceeds the memory available now (``psutil.virtual_memory().available``): on a shared
machine an out-of-memory kill would take other people's processes down too. Refused runs are
recorded as ``skipped`` with the figures that decided it, and can be retried later.

The pyserini worker caps the JVM heap (``--jvm-heap``, default 3g) so its memory is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_retrieval import PeakRSS, environment, parse_size, size_label, time_queries
from benchmarks.scale_report import BACKENDS, NOTES, markdown
from tasks.storage import atomic_write_json, atomic_write_text, cache_home

WARMUP_QUERIES = 20
MIN_AVAILABLE_MB = 2_000  # a running worker ends itself when the machine has less than this free
MARGIN_MB = 3_000  # left free for the other jobs on the machine, beyond the estimate
# Peak RSS (MB) per million passages before anything was measured here: generous on purpose.
PRIOR_PEAK_MB_PER_M = {
    "build": {"bm25s": 4_500, "bm25s_pruned": 4_500, "pyserini": 5_000},
    "serve": {"bm25s": 2_500, "bm25s_pruned": 2_500, "pyserini": 4_500},
}
PHASES = ("build", "serve")


# ------------------------------------------------------------------------------------ worker


def _corpus(n_passages: int, n_queries: int) -> tuple[Any, list[str], float, int]:
    """The synthetic corpus, its questions, the seconds it took and the RSS it added (bytes)."""
    from tasks.synthetic import synthetic_task

    probe = PeakRSS()
    before, start = probe.rss(), time.perf_counter()
    task = synthetic_task(n_passages, seed=0, n_questions=min(n_queries, n_passages // 2))
    task.corpus.fingerprint()
    queries = [q.question for split in ("test", "dev", "train") for q in task.splits.get(split, ())]
    return task.corpus, queries[:n_queries], time.perf_counter() - start, probe.rss() - before


def _disk_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def _cap_jvm_heap(heap: str) -> None:
    """Give the JVM pyserini starts in this process a maximum heap (before it starts)."""
    import jnius_config

    if not jnius_config.vm_running:
        jnius_config.add_options(f"-Xmx{heap}")


def abort_when_memory_low(result_path: Path, floor_mb: float) -> None:
    """Watch the machine's available memory from a thread; below ``floor_mb``, end this worker.

    It writes why to ``result_path`` (the parent records it) and exits at once, before the kernel's
    OOM killer would pick a victim, which on a shared machine may be someone else's process.
    """
    import psutil

    process = psutil.Process()

    def watch() -> None:
        while True:
            available = psutil.virtual_memory().available / 2**20
            if available < floor_mb:
                rss = process.memory_info().rss / 2**20
                reason = f"aborted: memory available fell to {available:,.0f} MB (worker RSS {rss:,.0f} MB)"
                atomic_write_json(result_path, {"error": reason})
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def run_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build the index of one (size, backend) into the work folder; time, peak RSS, disk."""
    from searchenv.retrieval import ensure_index

    corpus, _, corpus_seconds, corpus_bytes = _corpus(args.n, args.queries)
    probe = PeakRSS()
    baseline = probe.rss()
    start = time.perf_counter()
    with PeakRSS() as memory:
        folder, meta, _ = ensure_index(corpus, args.backend, cache_dir=args.cache_dir, rebuild=True)
    return {
        "corpus_seconds": round(corpus_seconds, 1),
        "corpus_rss_mb": round(corpus_bytes / 2**20, 1),
        "n_tokens": meta["counts"]["n_tokens"],
        "vocab_size": meta["counts"]["vocab_size"],
        "build_seconds": round(time.perf_counter() - start, 1),
        "build_peak_rss_mb": round(memory.peak / 2**20, 1),
        "build_peak_delta_rss_mb": round((memory.peak - baseline) / 2**20, 1),
        "index_disk_mb": _disk_mb(folder),
        "build_load_average": round(os.getloadavg()[0], 2),
        **({"jvm_heap": args.jvm_heap} if args.backend == "pyserini" else {}),
    }


def run_serve(args: argparse.Namespace) -> dict[str, Any]:
    """Open the built index as the env does, then time queries one by one and batched."""
    from searchenv.retrieval import ensure_index, load_retriever

    corpus, queries, _, corpus_bytes = _corpus(args.n, args.queries)
    probe = PeakRSS()
    baseline = probe.rss()
    start = time.perf_counter()
    ensure_index(corpus, args.backend, cache_dir=args.cache_dir, verify="full")  # hashes every file
    verify_seconds = time.perf_counter() - start
    start = time.perf_counter()
    retriever = load_retriever(corpus, args.backend, cache_dir=args.cache_dir)  # stamp: no rehash
    load_seconds = time.perf_counter() - start
    after_load = probe.rss()
    timings, _ = time_queries(retriever, queries, WARMUP_QUERIES)
    return {
        "corpus_rss_mb": round(corpus_bytes / 2**20, 1),
        "verify_seconds": round(verify_seconds, 2),
        "load_seconds": round(load_seconds, 2),
        "rss_before_load_mb": round(baseline / 2**20, 1),
        "rss_after_load_mb": round(after_load / 2**20, 1),
        "load_delta_rss_mb": round((after_load - baseline) / 2**20, 1),
        "serve_delta_rss_mb": round((probe.rss() - baseline) / 2**20, 1),
        "queries_timed": len(queries),
        **{key: value for key, value in timings.items() if key != "load_average"},
        "serve_load_average": timings["load_average"],
    }


# ------------------------------------------------------------------------------------ parent


def machine() -> dict[str, Any]:
    """CPU model, cores, total and available memory, load average: what the figures depend on."""
    import psutil

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read_lines("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = psutil.virtual_memory()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_total_gb": round(memory.total / 2**30, 1),
        "ram_available_gb_at_start": round(memory.available / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **environment(),
    }


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def heap_mb(text: str) -> float:
    """A JVM ``-Xmx`` size in MB.

    >>> heap_mb("3g"), heap_mb("512m"), heap_mb("2G")
    (3072.0, 512.0, 2048.0)
    """
    text = text.strip().lower()
    return (
        float(text[:-1]) * {"g": 1024, "m": 1, "k": 1 / 1024}[text[-1]]
        if text[-1] in "gmk"
        else float(text) / 2**20
    )


def estimate_peak_mb(report: dict[str, Any], n: int, backend: str, phase: str, jvm_heap: str = "3g") -> float:
    """Expected peak RSS of a worker (MB), from the largest measured size of the backend, else a prior.

    The corpus part scales with the passages; so does the rest, except pyserini's, which the JVM
    heap cap bounds (heap plus about 1.5 GB of JVM and Python overhead).
    """
    key = "build_peak_rss_mb" if phase == "build" else "rss_after_load_mb"
    measured = [
        (run["n_docs"], run[key], run.get("corpus_rss_mb", 0.0))
        for run in report["runs"].values()
        if run["backend"] == backend and key in run
    ]
    if not measured:
        return PRIOR_PEAK_MB_PER_M[phase][backend] * n / 1e6
    n_ref, peak, corpus = max(measured)
    ratio = n / n_ref
    rest = (peak - corpus) * ratio * (1.3 if phase == "serve" else 1.0)  # serving touches more pages
    if backend == "pyserini":
        rest = min(rest, heap_mb(jvm_heap) + 1536)
    return corpus * ratio + rest


def run_phase(args: argparse.Namespace, n: int, backend: str, phase: str, work: Path) -> dict[str, Any]:
    """Run one worker in a fresh process at the lowest CPU priority; its JSON result or an error."""
    result_path = work / f"{size_label(n)}-{backend}-{phase}.json"
    result_path.unlink(missing_ok=True)
    command = ["nice", "-n", "19", sys.executable, "-m", "benchmarks.bench_scale", "--worker", phase]
    command += ["--n", str(n), "--backends", backend, "--queries", str(args.queries)]
    command += ["--cache-dir", str(work / f"{size_label(n)}-{backend}"), "--result", str(result_path)]
    command += ["--jvm-heap", args.jvm_heap]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=root, check=False)
    if completed.returncode != 0:
        if result_path.exists():  # the worker's own account (the memory guard)
            return {"error": f"{phase} {json.loads(result_path.read_text())['error']}"}
        return {"error": f"{phase} worker exit code {completed.returncode}"}
    result: dict[str, Any] = json.loads(result_path.read_text())
    result[f"{phase}_worker_seconds"] = round(time.perf_counter() - start, 1)
    result_path.unlink()
    return result


def measure(args: argparse.Namespace, report: dict[str, Any], out: Path, work: Path) -> None:
    """Every (size, backend) not in the report yet, phase by phase, saving after each."""
    import psutil

    session = args.session or time.strftime("%Y-%m-%dT%H:%M")
    report.setdefault("sessions", {}).setdefault(session, machine())
    for n in args.sizes:
        for backend in args.backends:
            name = f"{size_label(n)}/{backend}"
            old = report["runs"].get(name)
            if args.remeasure and old is not None and old.get("session") != session:
                report.setdefault("superseded", {})[f"{name}@{old.get('session', 'before sessions')}"] = old
                del report["runs"][name]
            run = report["runs"].setdefault(name, {"n_docs": n, "backend": backend, "session": session})
            run.pop("skipped", None)
            run.pop("error", None)
            for phase in PHASES:
                if f"{phase}_worker_seconds" in run:
                    continue
                need = estimate_peak_mb(report, n, backend, phase, args.jvm_heap)
                available = psutil.virtual_memory().available / 2**20
                if need + MARGIN_MB > available:
                    run["skipped"] = (
                        f"{phase}: estimated peak RSS {need:,.0f} MB + {MARGIN_MB:,} MB margin > "
                        f"{available:,.0f} MB available at {time.strftime('%H:%M')}"
                    )
                    print(f"== {name} {phase}: SKIPPED, {run['skipped']}", file=sys.stderr, flush=True)
                    break
                print(f"== {name} {phase} (available {available:,.0f} MB)", file=sys.stderr, flush=True)
                result = run_phase(args, n, backend, phase, work)
                run.update(result)
                save(report, out)
                if "error" in result:
                    break
            if "serve_worker_seconds" in run and not args.keep_indexes:
                shutil.rmtree(work / f"{size_label(n)}-{backend}", ignore_errors=True)
            save(report, out)


def save(report: dict[str, Any], out: Path) -> None:
    """Write the JSON report and its Markdown table, each atomically."""
    atomic_write_json(out, report, indent=2, sort_keys=False)
    atomic_write_text(out.with_suffix(".md"), markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each size and backend not yet in the report (or run one worker phase)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1m,3m", help="synthetic corpus sizes, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", default="benchmarks/results/scale.json")
    parser.add_argument("--work-dir", default=None, help="index folders (default: cache home/bench-scale)")
    parser.add_argument("--keep-indexes", action="store_true", help="keep each index after it is measured")
    parser.add_argument(
        "--remeasure", action="store_true", help="measure again what the report holds (same-session ratios)"
    )
    parser.add_argument(
        "--session", default=None, help="resume this session (an id from the report's sessions)"
    )
    parser.add_argument("--jvm-heap", default="3g", help="maximum JVM heap for pyserini (-Xmx)")
    parser.add_argument("--worker", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - set(BACKENDS):
        parser.error(f"backends must be among {BACKENDS}")
    if args.worker:
        args.backend = args.backends[0]
        if args.backend == "pyserini":
            _cap_jvm_heap(args.jvm_heap)
        abort_when_memory_low(Path(args.result), MIN_AVAILABLE_MB)
        try:
            result = run_build(args) if args.worker == "build" else run_serve(args)
        except Exception as error:  # the parent records why, not just an exit code
            atomic_write_json(Path(args.result), {"error": f"failed: {type(error).__name__}: {error}"})
            raise
        atomic_write_json(Path(args.result), result)
        return 0
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else cache_home("bench-scale")
    work.mkdir(parents=True, exist_ok=True)
    report = (
        json.loads(out.read_text()) if out.exists() else {"machine": machine(), "notes": NOTES, "runs": {}}
    )
    report["notes"] = NOTES
    measure(args, report, out, work)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
