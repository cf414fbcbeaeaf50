"""``python -m benchmarks.experiments persistence|passk|diversity|hacking [--quick]``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import experiments
from benchmarks.experiments import diversity, hacking, passk, persistence, razor, status
from benchmarks.experiments.common import Context
from benchmarks.experiments.scales import QUICK, SCALES, Data
from searchenv.cli_errors import ArgumentParser, RawDescriptionDefaultsHelpFormatter, reports_errors
from tasks.dataset import OPTIONS, add_dataset_options, dataset_from_args

RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "persistence": persistence.run,
    "passk": passk.run,
    "diversity": diversity.run,
    "hacking": hacking.run,
    "razor": razor.run,
    "status": status.run,
}


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Run one experiment at one scale (the tiny model's full one by default)."""
    parser = ArgumentParser(
        prog="python -m benchmarks.experiments",
        description=experiments.__doc__,
        formatter_class=RawDescriptionDefaultsHelpFormatter,
        epilog="With a dataset (--dataset or --corpus/--questions) the experiments run on its questions "
        "of every kind, in runs/experiments_<name> and benchmarks/results/<name>/.",
    )
    parser.add_argument("experiment", choices=list(RUNNERS))
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="full",
        help="full: the tiny model, one seed; smollm2: SmolLM2-135M on the cheap CPU path, two seeds, "
        "runs in runs/smollm2 (shared with the README's learning runs); quick: a plumbing check",
    )
    parser.add_argument("--quick", action="store_true", help="same as --scale quick (~1 min)")
    parser.add_argument("--no-progress", action="store_true", help="accepted for symmetry; runs log to files")
    parser.add_argument(
        "--runs",
        default=None,
        help="run/sample cache (default runs/experiments[_quick][_<dataset name>]; runs/smollm2 for smollm2)",
    )
    parser.add_argument(
        "--results",
        default=None,
        help="results root (default benchmarks/results[/quick|/smollm2][/<dataset name>])",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes at a time, >= 1 (training and sampling)"
    )
    add_dataset_options(parser)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"argument --jobs: must be >= 1, got {args.jobs}")
    try:
        dataset = dataset_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    scale = QUICK if args.quick else SCALES[args.scale]
    options = {name: getattr(args, name) for name in OPTIONS if getattr(args, name)} if dataset else {}
    data = Data(options)
    suffix = f"_{dataset.name}" if dataset else ""
    default_runs = {"full": "runs/experiments", "quick": "runs/experiments_quick", "smollm2": "runs/smollm2"}
    runs = Path(args.runs or f"{default_runs[scale.name]}{suffix}")
    default_results = {"full": "benchmarks/results", "quick": "benchmarks/results/quick"}
    results = Path(args.results or default_results.get(scale.name, f"benchmarks/results/{scale.name}"))
    if dataset and not args.results:
        results = results / dataset.name
    # Before torch loads anywhere: one thread per process, several processes side by side.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = Context(scale=scale, runs=runs, results=results, jobs=max(1, args.jobs), data=data)
    started = time.perf_counter()
    RUNNERS[args.experiment](ctx)
    elapsed = time.perf_counter() - started
    print(f"\n{args.experiment}: {elapsed:.0f} s; results in {results / args.experiment}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
