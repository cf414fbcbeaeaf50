"""``make demo``: the main job on the bundled default task.

Builds (or loads) the factbook index, runs every scripted agent and probe over the test split,
and prints EM, F1, mean reward, searches per episode and wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from agents.rollout import run_episodes, summarize
from agents.scripted import PROBES, make_policy
from searchenv.resources import shared_retriever, shared_task


def scripted_table(split: str, progress: bool) -> str:
    task = shared_task("factbook")
    question_ids = [q.qid for q in task.questions(split)]
    rows = ["| agent | EM | F1 | reward | searches/ep | reads/ep | wall s |", "|---|---|---|---|---|---|---|"]
    for name in ("random", "bm25", "oracle", *PROBES):
        results = run_episodes(
            make_policy(name), {"split": split}, question_ids=question_ids, progress=progress
        )
        s = summarize(results)
        rows.append(
            f"| {name} | {s['em']:.3f} | {s['f1']:.3f} | {s['reward']:.3f} | {s['searches']:.2f} "
            f"| {s['reads']:.2f} | {s['wall_time']:.1f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    task = shared_task("factbook")
    retriever = shared_retriever(task.corpus, "bm25s")
    print(
        f"factbook: {len(task.corpus)} passages, "
        + ", ".join(f"{split} {len(qs)}" for split, qs in task.splits.items())
        + f" questions; index {retriever.backend} ready in {time.perf_counter() - started:.1f} s"
    )
    print(f"\nScripted agents on the {args.split} split (preset rezero-strict):\n")
    print(scripted_table(args.split, progress=not args.no_progress))
    print(f"\nTotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
