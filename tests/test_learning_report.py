"""The learning reports: the before/after report of RL runs (from their own metrics logs), and
the learning benchmark's report and figures redrawn from its committed results."""

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
    assert (tmp_path / "out" / "rl_diagnostics.md").read_text().startswith("| run |")
    diagnosed = json.loads((tmp_path / "out" / "rl_diagnostics.json").read_text())["nsr"]
    assert diagnosed["machine"] == "not recorded: the run predates machine.jsonl"
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "metrics.jsonl").write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="no training episodes"):
        episode_rewards(sft)


def test_learning_benchmark_redraws_its_committed_report(tmp_path: Path) -> None:
    """``bench_learning --plots-only`` rebuilds results.md and the figures from the results alone."""
    from benchmarks.bench_learning import main as bench_learning

    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "learning"
    out = tmp_path / "learning"
    out.mkdir()
    for name in ("results.json", "sft_metrics.jsonl", "nsr_metrics.jsonl", "ppo_metrics.jsonl"):
        (out / name).write_bytes((committed / name).read_bytes())
    assert bench_learning(["--plots-only", "--out", str(out)]) == 0
    assert (out / "results.md").read_text() == (committed / "results.md").read_text()
    for name in ("sft.png", "rl_reward.png", "probe.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_smollm2_report_is_reproduced(tmp_path: Path) -> None:
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "learning_smollm2"
    runs = [str(committed / name) for name in ("smol_nsr", "smol_ppo")]
    assert main([*runs, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "rl_reward.md").read_text() == (committed / "rl_reward.md").read_text()
    assert json.loads((tmp_path / "rl_reward.json").read_text()) == json.loads(
        (committed / "rl_reward.json").read_text()
    )


def test_report_names_the_dev_chosen_checkpoint(tmp_path: Path) -> None:
    from agents import checkpoint as ckpt

    run = tmp_path / "grpo_s0"
    run.mkdir()
    lines = [{"step": s, "episode_rewards": [1.0], "step_cpu_time": 2.0} for s in range(4)]
    lines[1]["eval_em"], lines[3]["eval_em"] = 0.5, 0.25  # after steps 2 and 4
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for step in (2, 4):
        folder = run / ckpt.CHECKPOINTS_FOLDER / ckpt.checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
    assert main([str(run), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    report = json.loads((tmp_path / "out" / "rl_reward.json").read_text())["grpo_s0"]
    assert report["dev"] == {"by_step": {"2": 0.5, "4": 0.25}, "chosen_step": 2, "chosen_dev_em": 0.5}
    assert report["cpu_time_s"] == 8.0
    assert "**2: 0.500**, 4: 0.250" in (tmp_path / "out" / "rl_reward.md").read_text()
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
