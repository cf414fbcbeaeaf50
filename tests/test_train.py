"""Trainers end to end on the tiny model: every algorithm, checkpoints, kill-and-resume, evaluation.

Runs are kept minimal (a few steps, a few short episodes, the rank_bm25 backend so no numba
compile is paid) to check plumbing, not learning; learning is measured in benchmarks/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents import checkpoint as ckpt
from agents.algos import ALGORITHMS
from agents.config import TrainConfig, build_parser, config_from_args, field_docs
from agents.evaluate import evaluate_checkpoint
from agents.lm.trajectory import pad_batch, sequence_logprobs
from agents.policy import Policy
from agents.train import train
from agents.update import forward
from agents.weights import load_checkpoint_model, load_policy

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
# Metrics of the first steps of these runs before the architecture change (issue 7), on this
# machine type; timings left out. A change here is a change of behaviour: explain it or fix it.
GOLDEN = json.loads((REPO / "tests" / "golden" / "train_first_steps.json").read_text())
TIMINGS = {"step_time", "step_cpu_time", "wall_time", "rollout_time", "update_time"}

# Small everything: two-turn episodes, 12 new tokens, a couple of episodes per step.
FAST = [
    "--hops", "1", "--max-turns", "2", "--max-new-tokens", "12", "--backend", "rank_bm25",
    "--episodes-per-step", "4", "--num-envs", "4", "--micro-batch-size", "4", "--threads", "1",
    "--sft-questions", "8", "--sft-batch-size", "4", "--no-progress", "--device", "cpu",
]  # fmt: skip


def _run(out: Path, *args: str) -> Path:
    return train(config_from_args(["--out", str(out), *FAST, *args]))


def _steps(run: Path) -> list[int]:
    return [record["step"] for record in ckpt.read_metrics(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(
        tmp_path_factory.mktemp("runs") / "sft",
        "--algo",
        "sft",
        "--steps",
        "3",
        "--save-every",
        "2",
        "--tensorboard",
    )


def test_every_config_field_is_a_documented_option() -> None:
    parser = build_parser()
    docs = field_docs(TrainConfig)
    options = {action.dest: action for action in parser._actions}
    for name in TrainConfig.__dataclass_fields__:
        assert name in options, name
        assert docs.get(name), f"field {name} has no docstring"
        assert options[name].help == docs[name].replace("%", "%%")
    assert "--reward-preset" in parser.format_help()
    cfg = config_from_args(["--algo", "grpo", "--hops", "1", "--no-progress", "--lr", "0.5"])
    assert (cfg.algo, cfg.hops, cfg.progress, cfg.lr) == ("grpo", 1, False, 0.5)
    resolved = cfg.resolved()
    assert resolved.group_size == 4 and resolved.kl_coef == 0.04 and resolved.lr == 0.5
    assert TrainConfig(algo="nsr").resolved().kl_coef == 0.0
    with pytest.raises(SystemExit):
        config_from_args(["--algo", "dpo"])
    with pytest.raises(ValueError, match="group_size"):
        TrainConfig(algo="grpo", group_size=1)
    with pytest.raises(ValueError, match="multiple"):
        TrainConfig(episodes_per_step=6, group_size=4)


def _assert_same_metrics(records: list[dict], golden: list[dict]) -> None:
    assert len(records) == len(golden)
    for record, expected in zip(records, golden, strict=True):
        kept = {key: value for key, value in record.items() if key not in TIMINGS}
        assert sorted(kept) == sorted(expected)
        for key, value in expected.items():
            where = (record["algo"], record["step"], key)
            if isinstance(value, str):
                assert kept[key] == value, where
            else:
                assert kept[key] == pytest.approx(value, rel=1e-4, abs=1e-6), where


def test_sft_run_writes_checkpoints_and_metrics(sft_run: Path) -> None:
    assert _steps(sft_run) == [0, 1, 2]
    _assert_same_metrics(ckpt.read_metrics(sft_run / "metrics.jsonl"), GOLDEN["sft"])
    assert [step for step, _ in ckpt.list_checkpoints(sft_run)] == [2, 3]
    records = ckpt.read_metrics(sft_run / "metrics.jsonl")
    assert all(r["algo"] == "sft" and r["loss"] > 0 and r["action_tokens"] > 0 for r in records)
    state = ckpt.read_state(ckpt.latest_checkpoint(sft_run))
    assert state["step"] == 3 and state["config"]["algo"] == "sft"
    latest = ckpt.latest_checkpoint(sft_run)
    assert latest is not None
    for name in ("model/model.safetensors", "model/tokenizer.json", "optimizer.pt", "scheduler.pt", "rng.pt"):
        assert (latest / name).is_file(), name
    assert json.loads((sft_run / "config.json").read_text())["steps"] == 3
    assert any((sft_run / "tensorboard").iterdir())


@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a != "sft"])
def test_rl_algorithms_run_end_to_end(algo: str, sft_run: Path, tmp_path: Path) -> None:
    run = _run(tmp_path / algo, "--algo", algo, "--init", str(sft_run), "--steps", "2", "--save-every", "1")
    records = ckpt.read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    _assert_same_metrics(records, GOLDEN[algo])
    for record in records:
        assert record["episodes"] == 4
        assert 0.0 <= record["accuracy"] <= 1.0
        assert record["action_tokens"] > 0
        # Old log-probs are recomputed with the trainer's forward; they must match generation's.
        assert record["logprob_gap"] < 1e-3
        assert record["ratio_mean"] == pytest.approx(1.0, abs=0.05)
    latest = ckpt.latest_checkpoint(run)
    assert latest is not None and ckpt.read_state(latest)["base_model"] == str(
        ckpt.latest_checkpoint(sft_run)
    )
    assert (latest / "value_head.pt").is_file() == (algo == "ppo")
    if algo in ("ppo", "grpo"):
        assert all("kl" in r for r in records)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_lora_run_and_policy_loading(sft_run: Path, tmp_path: Path) -> None:
    run = _run(
        tmp_path / "lora",
        "--algo",
        "nsr",
        "--init",
        str(sft_run),
        "--lora",
        "--steps",
        "1",
        "--lora-rank",
        "4",
    )
    latest = ckpt.latest_checkpoint(run)
    assert latest is not None
    assert (latest / "adapter" / "adapter_model.safetensors").is_file() and not (latest / "model").exists()
    model, _ = load_checkpoint_model(run)
    assert not hasattr(model, "peft_config")  # adapters merged into plain weights
    assert isinstance(load_policy(run), Policy)


def test_forward_matches_sequence_logprobs(sft_run: Path) -> None:
    from agents.algos.ppo import ValueHead

    model, tokenizer = load_checkpoint_model(sft_run)
    from agents.lm.trajectory import Trajectory

    generator = torch.Generator().manual_seed(0)
    trajectories = []
    for length in (40, 25):
        ids = torch.randint(0, len(tokenizer), (length,), generator=generator).tolist()
        mask = (torch.rand(length, generator=generator) < 0.4).long().tolist()
        mask[0] = 0
        trajectories.append(Trajectory("q", ids, mask, [0.0] * length, 0.0, False, {}, 0))
    batch = pad_batch(trajectories, pad_id=0)
    head = ValueHead(model.config.hidden_size)
    with torch.no_grad():
        reference = sequence_logprobs(model, batch, temperature=0.7)
        out = forward(model, batch, value_head=head, entropy=True, temperature=0.7)
    mask = batch["action_mask"][:, 1:].bool()
    assert torch.allclose(out.logprobs[mask], reference[mask], atol=1e-5)
    assert torch.count_nonzero(out.logprobs[~mask]) == 0
    assert out.values is not None and out.values.shape == mask.shape
    assert out.entropy is not None and bool((out.entropy[mask] > 0).all())


def test_load_policy_and_evaluate_checkpoint(sft_run: Path) -> None:
    policy = load_policy(sft_run)
    assert isinstance(policy, Policy) and policy.name.startswith("sft:")
    result = evaluate_checkpoint(sft_run, "test", episodes=3, num_envs=3, progress=False)
    assert result["n"] == 3 and result["hops"] == 1
    assert 0.0 <= result["em_ci95"][0] <= result["em"] <= result["em_ci95"][1] <= 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    from agents.device import resolve_device

    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA device"):
        _run(tmp_path / "cuda", "--algo", "sft", "--steps", "1", "--device", "cuda")
    assert resolve_device("auto").type == "cpu"
    assert not (tmp_path / "cuda" / "checkpoints").exists()


def test_existing_run_needs_resume(sft_run: Path) -> None:
    with pytest.raises(FileExistsError, match="--resume"):
        _run(sft_run, "--algo", "sft", "--steps", "4")


def test_kill_and_resume_continues_from_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "agents.train", "--out", str(run), *FAST]
    command += ["--algo", "sft", "--steps", "12", "--save-every", "2", "--sft-batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not ckpt.list_checkpoints(run):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    before = ckpt.list_checkpoints(run)
    killed_at = before[-1][0]
    assert killed_at < 12
    lines_before = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines_before) >= killed_at  # steps past the checkpoint may be logged; they are redone

    resumed = subprocess.run(
        [*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from step {killed_at}" in resumed.stderr
    assert _steps(run) == list(range(12))  # each step exactly once
    assert ckpt.list_checkpoints(run)[-1][0] == 12
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert isinstance(load_policy(run), Policy)
    # The resumed run is the uninterrupted run: same batches, weights and optimizer state.
    twin = _run(
        tmp_path / "twin", "--algo", "sft", "--steps", "12", "--save-every", "2", "--sft-batch-size", "2"
    )
    resumed_losses = [r["loss"] for r in ckpt.read_metrics(run / "metrics.jsonl")]
    twin_losses = [r["loss"] for r in ckpt.read_metrics(twin / "metrics.jsonl")]
    assert resumed_losses == pytest.approx(twin_losses, rel=1e-4)


# --- checkpoint primitives -------------------------------------------------------------------


def test_failed_save_leaves_no_checkpoint_and_pruning_keeps_last(tmp_path: Path) -> None:
    def boom(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.write_checkpoint(tmp_path, 1, boom, {})
    assert ckpt.list_checkpoints(tmp_path) == []
    assert list((tmp_path / "checkpoints").iterdir()) == []
    for step in (1, 2, 3):
        ckpt.write_checkpoint(
            tmp_path, step, lambda f: (f / "w.bin").write_bytes(b"w"), {"k": step}, keep_last=2
        )
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path))["k"] == 3
    (tmp_path / "checkpoints" / ".tmp-step-00000004-abc").mkdir()  # what a kill mid-save leaves
    assert ckpt.remove_partial_checkpoints(tmp_path) == 1
    with pytest.raises(ValueError, match="step"):
        ckpt.write_checkpoint(tmp_path, 5, lambda f: None, {"step": 1})


def test_truncate_metrics_drops_later_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with ckpt.MetricsLog(path) as log:
        for step in range(5):
            log.write({"step": step, "loss": 1.0})
    with open(path, "a") as handle:
        handle.write('{"step": 5, "lo')  # torn by a kill
    assert ckpt.truncate_metrics(path, 2) == 3
    assert [r["step"] for r in ckpt.read_metrics(path)] == [0, 1, 2]
    with ckpt.MetricsLog(path) as log, pytest.raises(ValueError, match="step"):
        log.write({"loss": 1.0})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_smollm2_takes_one_sft_step_and_one_ppo_step(tmp_path: Path) -> None:
    import shutil

    small = ["--sft-questions", "2", "--sft-batch-size", "2", "--micro-batch-size", "1", "--keep-last", "1"]
    sft = _run(tmp_path / "sft", "--model", "smollm2-135m", "--algo", "sft", "--steps", "1", *small)
    record = ckpt.read_metrics(sft / "metrics.jsonl")[0]
    assert record["loss"] > 0 and record["grad_norm"] > 0
    ppo = _run(
        tmp_path / "ppo", "--init", str(sft), "--algo", "ppo", "--lora", "--steps", "1",
        "--episodes-per-step", "2", "--num-envs", "2", "--micro-batch-size", "1", "--keep-last", "1",
    )  # fmt: skip
    record = ckpt.read_metrics(ppo / "metrics.jsonl")[0]
    assert (
        record["episodes"] == 2 and record["logprob_gap"] < 1e-2 and "kl" in record and "value_loss" in record
    )
    assert isinstance(load_policy(ppo), Policy)
    shutil.rmtree(tmp_path)  # ~1.6 GB of full-weight checkpoint and optimizer state
