"""The before/after report of RL runs reads their own metrics logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.learning_report import before_after, episode_rewards, main


def _run(folder: Path, steps: list[list[float]]) -> Path:
    folder.mkdir()
    lines = [json.dumps({"step": i, "episode_rewards": rewards}) for i, rewards in enumerate(steps)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_first_and_last_quarter(tmp_path: Path) -> None:
    steps = [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]
    result = before_after(episode_rewards(_run(tmp_path / "r", steps)))
    assert result["steps_per_quarter"] == 1
    assert result["first"]["mean"] == 0.0 and result["last"]["mean"] == 2.0
    assert result["difference"]["mean"] == 2.0 and result["difference"]["low"] == 2.0


def test_report_files_and_sft_runs_rejected(tmp_path: Path) -> None:
    run = _run(tmp_path / "nsr", [[1.0, 2.0]] * 8)
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "rl_reward.json").read_text())["nsr"]["steps"] == 8
    assert (tmp_path / "out" / "nsr" / "metrics.jsonl").exists()
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "metrics.jsonl").write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="no training episodes"):
        episode_rewards(sft)
