"""The scripted agents' leaderboard figures are those measured before the architecture change.

``tests/golden/scripted_leaderboard_120.json`` was written by the leaderboard of the commit
before issue 7 (seeds 0 and 1, a fixed 120-question subset of the factbook test split);
``scripted_leaderboard_full.json`` holds the same for all 635 test questions, checked once by
hand. Every figure but wall time must come out the same: the env, the tasks, the scripted
agents, the episode loop and the evaluation engine all sit under these numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.leaderboard import main as leaderboard_main

GOLDEN = Path(__file__).parent / "golden" / "scripted_leaderboard_120.json"


def _figures(value: Any, path: str = "") -> dict[str, Any]:
    """Flatten a summary into path -> leaf, leaving out timings."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            if "wall" in key or "time" in key or key.endswith("per_s"):
                continue
            flat.update(_figures(inner, f"{path}/{key}"))
        return flat
    return {path: value}


def test_scripted_leaderboard_figures_are_unchanged(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    agents = sorted(golden["agents"])
    leaderboard_main(
        [
            *("--agents", *agents, "--split", "test", "--seeds", "0", "1", "--max-questions", "120"),
            *("--out", str(tmp_path), "--no-plots", "--no-progress"),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    summaries = {pair["agent"]: pair["summary"] for pair in results["pairs"]}
    assert sorted(summaries) == agents
    for agent in agents:
        expected, actual = _figures(golden["agents"][agent]), _figures(summaries[agent])
        missing = sorted(set(expected) - set(actual))
        assert not missing, (agent, missing)
        for key, value in expected.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # float64 numpy and Python arithmetic, no torch: the same on every CPU (retrieval
                # scores and ranks, bootstrap draws and quantiles are bit for bit the same on
                # numpy's SSE4.2 baseline, which .ci/run checks). rel 1e-9 admits nothing but a
                # reordered float64 sum (~1e-16 per term), and any changed episode moves these
                # means over 240 episodes by orders of magnitude more.
                assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (agent, key)
            else:
                assert actual[key] == value, (agent, key)
