"""The Markdown report of ``benchmarks.bench_scale``: the measured table and the 21M extrapolation."""

from __future__ import annotations

from typing import Any

from benchmarks.bench_retrieval import size_label

BACKENDS = ("bm25s", "bm25s_pruned", "pyserini")
REFERENCE = "pyserini"  # the ratios are against Lucene, measured in the same session
PLANNED_SIZES = (1_000_000, 3_000_000, 10_000_000)

COLUMNS = (
    ("passages", "n_docs", "{:,}"),
    ("backend", "backend", "{}"),
    ("build s", "build_seconds", "{}"),
    ("build peak RSS MB", "build_peak_rss_mb", "{:,}"),
    ("index MB", "index_disk_mb", "{:,}"),
    ("load s", "load_seconds", "{}"),
    ("verify s", "verify_seconds", "{}"),
    ("corpus RSS MB", "corpus_rss_mb", "{:,}"),
    ("RSS after load MB", "rss_after_load_mb", "{:,}"),
    ("load ΔRSS MB", "load_delta_rss_mb", "{:,}"),
    ("p50 ms", "p50_ms", "{}"),
    ("p99 ms", "p99_ms", "{}"),
    ("batched q/s", "batch_qps", "{:,}"),
    ("q/CPU-s", "batch_qps_cpu", "{:,}"),
    ("load avg", "serve_load_average", "{}"),
    ("JVM heap", "jvm_heap", "{}"),
    ("session", "session", "{}"),
)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with the machine and the notes."""
    host = report["machine"]
    lines = [
        "# Retrieval at scale (synthetic passages)",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores shared with other jobs, "
        f"{host['ram_total_gb']} GB RAM ({host['ram_available_gb_at_start']} GB available at start), "
        f"load average {host['load_average_at_start']} at start; Python {host['python']}. "
        "Everything at nice 19 and one thread; wall-clock figures include waiting for a core.",
        "",
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for run in sorted(report["runs"].values(), key=lambda r: (r["n_docs"], r["backend"])):
        cells = [fmt.format(run[key]) if key in run else "" for _, key, fmt in COLUMNS]
        note = run.get("skipped") or run.get("error") or run.get("remark")
        lines.append("| " + " | ".join(cells) + " |" + (f" {note}" if note else ""))
    lines += session_ratios(report)
    lines += goals(report)
    lines += still_to_run(report)
    estimates = extrapolate(report)
    if estimates:
        lines += [
            "",
            f"## Extrapolated to Wikipedia DPR ({DPR_PASSAGES:,} passages, {DPR_TERMS:.0f} terms each)",
            "",
            "Linear in indexed terms: the marginal cost per passage between the two largest measured "
            "sizes (or cost / passages with one size), times 21M, times DPR's terms per passage over "
            "the synthetic corpus's. Corpus RAM: a Python Corpus of all passages (the jsonl route); "
            "a prebuilt index read through LuceneCorpus needs none of it.",
            "",
            "| backend | from | build h | index GB | build RAM GB (w/o corpus) | RSS after 1,000 queries GB "
            "(w/o corpus) | corpus RAM GB |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in estimates:
            build_gb = f"{row['build_gb']:.1f}"
            if row["backend"] == "pyserini":  # the JVM heap is capped: Lucene flushes, it does not grow
                build_gb = f"-Xmx + ~{row['build_gb'] - row['jvm_part_gb']:.1f} (Python side, est.)"
            lines.append(
                f"| {row['backend']} | {row['from']} | {row['build_h']:.1f} | {row['index_gb']:.1f} "
                f"| {build_gb} | {row['load_gb']:.1f} | {row['corpus_gb']:.1f} |"
            )
    lines += previous_builder(report)
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def session_ratios(report: dict[str, Any]) -> list[str]:
    r"""Per session and size, each backend's p50 and batched q/s against Lucene's in that session.

    >>> runs = {f"1m/{b}": {"n_docs": 10**6, "backend": b, "session": "s", "p50_ms": p, "batch_qps": q}
    ...         for b, p, q in (("pyserini", 4.0, 100.0), ("bm25s_pruned", 1.0, 500.0))}
    >>> print("\n".join(session_ratios({"runs": runs, "sessions": {"s": {"cpu": "EPYC"}}})[-2:]))
    | s | 1,000,000 | bm25s_pruned | 1.0 | 4.0 | 4.00x | 500.0 | 100.0 | 5.00x | 0.00x |
    | s | 1,000,000 | pyserini | 4.0 | 4.0 | 1.00x | 100.0 | 100.0 | 1.00x | 0.00x |
    """
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for run in report["runs"].values():
        if "session" in run and "p50_ms" in run:
            groups.setdefault((run["session"], run["n_docs"]), {})[run["backend"]] = run
    rows = []
    for (session, n), runs in sorted(groups.items()):
        reference = runs.get(REFERENCE)
        if reference is None:
            continue
        for backend, run in sorted(runs.items()):
            speedup = reference["p50_ms"] / run["p50_ms"]
            throughput = run["batch_qps"] / reference["batch_qps"]
            cpu = run.get("batch_qps_cpu", 0) / reference.get("batch_qps_cpu", float("inf"))
            rows.append(
                f"| {session} | {n:,} | {backend} | {run['p50_ms']} | {reference['p50_ms']} | {speedup:.2f}x "
                f"| {run['batch_qps']:,} | {reference['batch_qps']:,} | {throughput:.2f}x | {cpu:.2f}x |"
            )
    if not rows:
        return []
    machines = "; ".join(
        f"{session}: {host.get('cpu', '?')}, {host.get('cores', '?')} cores, "
        f"{host.get('ram_available_gb_at_start', '?')} GB available, load average "
        f"{host.get('load_average_at_start', '?')}"
        for session, host in sorted(report.get("sessions", {}).items())
        if any(key[0] == session for key in groups)
    )
    return [
        "",
        "## Against Lucene, measured in the same session",
        "",
        f"Every backend of a session ran in that one `bench_scale` invocation, back to back on the same "
        f"machine ({machines}). Lucene p50 / backend p50, backend q/s / Lucene q/s (wall clock) and the "
        "same per CPU-second of the process: above 1 is faster. On a loaded machine the wall-clock "
        "throughput counts waits for a core; the CPU-second ratio does not.",
        "",
        "| session | passages | backend | p50 ms | Lucene p50 ms | p50 speed-up | batched q/s | Lucene q/s "
        "| throughput ratio | q/CPU-s ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def goals(report: dict[str, Any], backend: str = "bm25s_pruned") -> list[str]:
    """Issue 19's goals for the pruned backend, met or missed, from same-session ratios only.

    Below 10M passages: p50 and batched throughput at least 3x Lucene's; at 10M and above: p50
    at most Lucene's and batched throughput at least 2x.
    """
    lines = []
    measured = set()
    for run in sorted(report["runs"].values(), key=lambda r: r["n_docs"]):
        reference = report["runs"].get(f"{size_label(run['n_docs'])}/{REFERENCE}")
        if run["backend"] != backend or reference is None or reference.get("session") != run.get("session"):
            continue
        if "p50_ms" not in run or "p50_ms" not in reference:
            continue
        measured.add(run["n_docs"])
        p50 = reference["p50_ms"] / run["p50_ms"]
        wall = run["batch_qps"] / reference["batch_qps"]
        cpu = run["batch_qps_cpu"] / reference["batch_qps_cpu"]
        need_p50, need_q = (1.0, 2.0) if run["n_docs"] >= 10_000_000 else (3.0, 3.0)
        met = p50 >= need_p50 and min(wall, cpu) >= need_q
        lines.append(
            f"- {run['n_docs']:,} passages: p50 {p50:.2f}x Lucene's (goal {need_p50:g}x), batched "
            f"{wall:.2f}x wall clock / {cpu:.2f}x per CPU-second (goal {need_q:g}x): "
            f"{'met' if met else 'missed'}"
        )
    for n in PLANNED_SIZES:
        if n not in measured:
            lines.append(f"- {n:,} passages: not measured yet (Still to run)")
    return ["", f"## Goals (issue 19) for {backend}", "", *lines] if lines else []


def still_to_run(report: dict[str, Any]) -> list[str]:
    """The planned sizes a backend has no finished row for, with the command that measures them."""
    done = {(r["n_docs"], r["backend"]) for r in report["runs"].values() if "serve_worker_seconds" in r}
    missing = [(n, b) for n in PLANNED_SIZES for b in BACKENDS if (n, b) not in done]
    if not missing:
        return []
    sizes = ",".join(size_label(n) for n in sorted({n for n, _ in missing}))
    listed = ", ".join(f"{size_label(n)} {b}" for n, b in missing)
    stopped = "".join(
        f" {name} (session {run.get('session')}) was stopped unfinished: {run.get('why', '')}."
        for name, run in sorted((report.get("stopped") or {}).items())
    )
    return [
        "",
        "## Still to run",
        "",
        f"No row yet for: {listed}.{stopped} To measure them beside bm25s and Lucene in one session "
        "(about 1.5 h of builds at 10M on these cores, 12 GB peak for the bm25s builds: a machine "
        "with 24 GB free), run:",
        "",
        "```",
        f"nice -n 19 python -m benchmarks.bench_scale --sizes {sizes} --backends bm25s,bm25s_pruned,pyserini "
        "--remeasure",
        "```",
    ]


def previous_builder(report: dict[str, Any]) -> list[str]:
    """The bm25s build runs measured with ``bm25s.BM25.index`` before the streaming builder."""
    runs = report.get("previous_bm25s_builder") or {}
    if not runs:
        return []
    lines = [
        "",
        "## bm25s built by bm25s.BM25.index (the previous builder, superseded)",
        "",
        "Same script, same synthetic corpora, same saved files; kept for the memory comparison.",
        "",
        "| passages | build s | build peak RSS MB | build ΔRSS MB | corpus RSS MB | index MB |",
        "|---|---|---|---|---|---|",
    ]
    keys = ("build_seconds", "build_peak_rss_mb", "build_peak_delta_rss_mb", "corpus_rss_mb", "index_disk_mb")
    for run in sorted(runs.values(), key=lambda r: r["n_docs"]):
        cells = [f"{run[key]:,}" if key in run else "" for key in keys]
        note = run.get("skipped") or run.get("error")
        lines.append(f"| {run['n_docs']:,} | " + " | ".join(cells) + " |" + (f" {note}" if note else ""))
    pairs = report.get("builder_comparison") or []
    if pairs:
        lines += [
            "",
            "`python -m benchmarks.bench_bm25s_build`: back to back, each in a fresh process: "
            "tokenize, build and save into a plain folder (no cache, no checksums); "
            "ΔRSS is the peak above the corpus.",
            "",
            "| passages | builder | build s | build ΔRSS MB | sha256 of the files, concatenated (16 hex) |",
            "|---|---|---|---|---|",
        ]
        for row in pairs:
            lines.append(
                f"| {row['n_docs']:,} | {row['builder']} | {row['seconds']} | {row['peak_delta_mb']:,} "
                f"| {row['files_sha256']} |"
            )
    return lines


# Smaller corpora are dominated by fixed costs (interpreter, compilation): not a base for 21M.
MIN_EXTRAPOLATE = 1_000_000
DPR_PASSAGES = 21_015_324  # Pyserini's metadata for wikipedia-dpr-100w
DPR_TERMS = 1_512_973_270 / DPR_PASSAGES  # indexed terms per passage (Lucene's analyzer): 72


def extrapolate(report: dict[str, Any], n: int = DPR_PASSAGES) -> list[dict[str, Any]]:
    """Per backend, the measured costs carried linearly to ``n`` DPR-sized passages."""
    fields = {
        "build_h": ("build_seconds", 1 / 3600),
        "index_gb": ("index_disk_mb", 1 / 1024),
        "build_gb": ("build_rest_mb", 1 / 1024),
        "load_gb": ("serve_delta_rss_mb", 1 / 1024),
        "corpus_gb": ("corpus_rss_mb", 1 / 1024),
    }
    rows = []
    for backend in BACKENDS:
        done = sorted(
            (
                r
                for r in report["runs"].values()
                if r["backend"] == backend and "serve_worker_seconds" in r and r["n_docs"] >= MIN_EXTRAPOLATE
            ),
            key=lambda r: r["n_docs"],
        )
        if not done:
            continue
        for run in done:
            run["build_rest_mb"] = run["build_peak_rss_mb"] - run["corpus_rss_mb"]
        big, small = done[-1], (done[-2] if len(done) > 1 else None)
        terms = DPR_TERMS / (big["n_tokens"] / big["n_docs"])
        row: dict[str, Any] = {"backend": backend, "from": ", ".join(size_label(r["n_docs"]) for r in done)}
        for name, (key, unit) in fields.items():
            if small is None:
                per_passage = big[key] / big["n_docs"]
            else:
                per_passage = (big[key] - small[key]) / (big["n_docs"] - small["n_docs"])
            row[name] = per_passage * n * terms * unit
        # Of pyserini's build RAM, the JVM's part is bounded by -Xmx; what scales is the Python side
        # (doc id list, vocabulary set), estimated at 120 bytes per passage.
        row["jvm_part_gb"] = row["build_gb"] - 120 * n / 2**30
        rows.append(row)
    for run in report["runs"].values():
        run.pop("build_rest_mb", None)
    return rows


NOTES = [
    "memory: a worker starts only if its estimated peak (linear from the largest measured size) plus "
    "3 GB fits in the memory available then, and ends itself if the machine's available memory falls "
    "below 2 GB; refused and aborted runs are listed with the reason",
    "JVM heap: pyserini's -Xmx (--jvm-heap); Anserini's RAM buffer is a third of it",
    "build peak RSS: the worker process's peak resident memory during the build (corpus included), "
    "sampled every 20 ms; pyserini's JVM runs in that process with the heap capped by --jvm-heap",
    "load s: load_retriever in a fresh process after a full checksum pass (verify s, timed apart), "
    "so it is the open alone; for bm25s it includes loading numba's cached machine code",
    "RSS after load: the serve process's RSS right after load (corpus in memory, index mmapped); "
    "load ΔRSS subtracts the RSS before the load (the corpus and interpreter)",
    "p50/p99: 1,000 single queries (top-10) after 20 warm-up queries; batched q/s: the same 1,000 "
    "in one search_batch call; q/CPU-s: the same per CPU-second of the process",
    "bm25s build: searchenv.retrieval.bm25s_build tokenizes passage by passage, keeps compact "
    "(term, count) pairs and counting-sorts them into the .npy files one block of columns at a "
    "time, writing the same files as bm25s.BM25.index + save (tests/test_bm25s_build.py compares "
    "them byte for byte) with a fraction of the memory",
    "conditions: the machine line is as the report was first created; rows were measured in "
    "different sessions, each with its own load average (load avg column; build_load_average in "
    "the JSON)",
    "bm25s_pruned: the bm25s build (same streaming builder, same files) plus block maxima "
    "(searchenv/retrieval/block_max.py: per 64 postings the largest impact and the last passage; "
    "per term the largest impact), included in its build time and index size; search is exact "
    "block-max MaxScore compiled with numba (searchenv/retrieval/maxscore.py), hits and float32 "
    "scores equal to bm25s's (tests/test_retrieval_pruned.py)",
    "tantivy was the other candidate and is not measured here: its BM25 fixes k1=1.2 and b=0.75 in "
    "its source and stores passage lengths in one byte, so it cannot give the k1=0.9, b=0.4 "
    "rankings the other backends share; pruning bm25s's own matrices keeps them bit for bit and "
    "adds no dependency (numba is already one)",
    "sizes: past 4,116,000 passages tasks.synthetic gives places and coins four-syllable names (the "
    "three-syllable ones run out), so the 10M corpus's names are two letters longer than the 1M's "
    "and 3M's; smaller corpora are unchanged",
]
