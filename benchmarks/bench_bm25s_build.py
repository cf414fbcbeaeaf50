"""Peak memory and time of the two bm25s builders on the same synthetic corpus.

    python -m benchmarks.bench_bm25s_build --sizes 100k,1m

For each size, two fresh processes one after the other tokenize the corpus and save an index
into a plain temporary folder: ``bm25s.BM25.index`` + ``save`` (what ``BM25sRetriever.build``
did before) and ``searchenv.retrieval.bm25s_build.write_lucene_index`` (what it does now). Each
reports its peak RSS above the corpus (sampled by ``PeakRSS``), its seconds and a hash of the
saved files: equal hashes show both wrote the same index. The rows go into the
``builder_comparison`` entry of ``benchmarks/results/scale.json`` (``scale_report`` renders it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_retrieval import PeakRSS, parse_size

BUILDERS = {"old": "bm25s.BM25.index", "new": "bm25s_build"}
K1, B = 0.9, 0.4


def _build_old(terms_per_passage: Any, folder: Path) -> None:
    """The former ``BM25sRetriever.build`` body: token ids as lists, then bm25s's own index."""
    import bm25s

    vocab: dict[str, int] = {}
    corpus_ids = [[vocab.setdefault(term, len(vocab)) for term in terms] for terms in terms_per_passage]
    model = bm25s.BM25(k1=K1, b=B, method="lucene", backend="numpy")
    model.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
    del corpus_ids
    model.save(str(folder), show_progress=False)


def worker(builder: str, n_passages: int) -> dict[str, Any]:
    """Build one index in this process; the measurements as a dict."""
    from searchenv.retrieval import default_tokenizer
    from searchenv.retrieval.bm25s_build import write_lucene_index
    from searchenv.retrieval.tokenize import tokenize_corpus
    from tasks.synthetic import synthetic_task

    corpus = synthetic_task(n_passages, seed=0, n_questions=10).corpus
    terms = tokenize_corpus(corpus.passages(), default_tokenizer(), total=len(corpus))
    baseline = PeakRSS().rss()
    with tempfile.TemporaryDirectory() as scratch, PeakRSS() as memory:
        folder = Path(scratch)
        started = time.perf_counter()
        if builder == "old":
            _build_old(terms, folder)
        else:
            write_lucene_index(terms, folder, k1=K1, b=B)
        seconds = time.perf_counter() - started
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            digest.update(path.read_bytes())
    return {
        "n_docs": n_passages,
        "builder": BUILDERS[builder],
        "seconds": round(seconds, 1),
        "peak_delta_mb": round((memory.peak - baseline) / 2**20, 1),
        "files_sha256": digest.hexdigest()[:16],
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Measure both builders at each size, each in a fresh process; record and return the rows."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100k,1m", help="synthetic corpus sizes, comma-separated")
    parser.add_argument("--report", type=Path, default=Path(__file__).parent / "results" / "scale.json")
    parser.add_argument("--worker", choices=sorted(BUILDERS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n)))
        return []
    rows = []
    for size in args.sizes.split(","):
        for builder in BUILDERS:
            command = [sys.executable, "-m", "benchmarks.bench_bm25s_build", "--worker", builder]
            output = subprocess.run(
                [*command, "--n", str(parse_size(size))], check=True, capture_output=True, text=True
            ).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    if args.report.exists():
        from benchmarks.scale_report import markdown
        from tasks.storage import atomic_write_json, atomic_write_text

        report = json.loads(args.report.read_text())
        report["builder_comparison"] = rows
        atomic_write_json(args.report, report, indent=2, sort_keys=False)
        atomic_write_text(args.report.with_suffix(".md"), markdown(report))
    return rows


if __name__ == "__main__":
    main()
