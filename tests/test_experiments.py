"""The experiments package and the training recipes: statistics on hand-made episodes, the
recipes against the commands of the committed runs, the probes end to end, one experiment
end to end (slow)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.algos import resolve
from benchmarks import recipes
from benchmarks.evaluation import correct_matrix, paired_difference, pass_at_k_intervals
from benchmarks.experiments import common, diversity, hacking, passk, persistence, scales
from benchmarks.experiments.__main__ import main

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _row(qid: str, sample: int, correct: bool, queries: list[str], answer: str | None = "x") -> dict:
    return {
        "qid": qid,
        "seed": 0,
        "sample": sample,
        "correct": correct,
        "reward": float(correct),
        "breakdown": {"retry": 0.5},
        "queries": queries,
        "answer": answer,
    }


def test_repeated_searches_counts_normalized_repeats_only() -> None:
    assert common.repeated_searches([]) == 0
    assert common.repeated_searches(["capital of France", "France capital"]) == 0
    assert common.repeated_searches(["capital of France", "capital of france!", "capital of France"]) == 2


def test_correct_matrix_orders_questions_and_samples() -> None:
    rows = [_row("b", 1, True, []), _row("a", 0, False, []), _row("b", 0, False, []), _row("a", 1, True, [])]
    assert correct_matrix(rows).tolist() == [[False, True], [False, True]]
    assert correct_matrix(rows, ["b", "a"]).tolist() == [[False, True], [False, True]]


def test_passk_curve_rises_with_k_and_has_intervals() -> None:
    rows = [_row(q, s, s == 0 and q == "a", []) for q in "abcd" for s in range(4)]
    curve = pass_at_k_intervals(correct_matrix(rows), [1, 2, 4])
    assert [curve[k]["mean"] for k in (1, 2, 4)] == pytest.approx([1 / 16, 1 / 8, 1 / 4])
    assert all(curve[k]["low"] <= curve[k]["mean"] <= curve[k]["high"] for k in (1, 2, 4))


def test_behaviour_repeat_rate_and_em() -> None:
    rows = [_row("a", 0, True, ["q1", "q1", "q2"]), _row("b", 0, False, ["q3"])]
    figures = common.behaviour(rows)
    assert figures["repeated_query_rate"] == pytest.approx(1 / 4)
    assert figures["em"]["mean"] == pytest.approx(0.5)
    assert figures["searches_per_episode"]["mean"] == pytest.approx(2.0)
    assert figures["repeated_query_rate_per_question"]["mean"] == pytest.approx(1 / 6)
    assert figures["n_questions"] == 2 and figures["retry_component"] == 0.5


def test_behaviour_without_searches_reports_no_rate() -> None:
    assert common.behaviour([_row("a", 0, False, [])])["repeated_query_rate"] is None


def test_question_diversity_collapsed_vs_spread() -> None:
    collapsed = [_row("a", s, False, ["capital of Peru"], "lima") for s in range(4)]
    spread = [
        _row("a", s, False, [f"query {w}"], f"ans{s}") for s, w in enumerate(["one", "two", "three", "four"])
    ]
    narrow, wide = diversity.question_diversity(collapsed)["a"], diversity.question_diversity(spread)["a"]
    assert narrow["distinct_queries"] == 1 and wide["distinct_queries"] == 4
    assert narrow["unique_query_ratio"] == pytest.approx(0.25) and wide["unique_query_ratio"] == 1.0
    assert narrow["first_query_similarity"] == pytest.approx(1.0)
    assert wide["first_query_similarity"] < 1.0
    assert (narrow["distinct_answers"], wide["distinct_answers"]) == (1.0, 4.0)


def test_paired_difference_over_common_questions() -> None:
    a = [_row("a", 0, True, []), _row("b", 0, True, [])]
    b = [_row("a", 0, False, []), _row("b", 0, True, []), _row("c", 0, False, [])]
    diff = paired_difference(a, b, lambda r: r["correct"])
    assert diff["mean"] == pytest.approx(0.5) and diff["n"] == 2
    with pytest.raises(ValueError, match="share no questions"):
        paired_difference(a, [_row("z", 0, True, [])], "correct")


def test_training_trend_reads_the_quarters(tmp_path: Path) -> None:
    lines = [{"step": i, "reward_mean": float(i), "accuracy": 0.5} for i in range(8)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    trend = persistence.training_trend(tmp_path)
    assert (trend["reward_first"], trend["reward_last"], trend["steps"]) == (0.5, 6.5, 8)
    assert persistence.training_trend(tmp_path / "missing") is None


# ---------------------------------------------------------------------------------------------- recipes


def _committed_commands() -> dict[str, str]:
    """The training commands the committed experiment results were produced with."""
    runs = json.loads((RESULTS / "hacking" / "results.json").read_text())["runs"]
    passk_runs = json.loads((RESULTS / "passk" / "results.json").read_text())["runs"]["rl"]
    commands = {"sft-base": runs["sft"]["base"]["command"], "sft": runs["sft"]["start"]["command"]}
    return commands | {name: run["command"] for name, run in {**runs["rl"], **passk_runs}.items()}


def _parsed(command: str) -> recipes.TrainConfig:
    from agents.config import config_from_args

    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "agents.train"]
    return config_from_args(argv[3:])


def test_experiment_recipes_rebuild_the_committed_runs() -> None:
    runs = Path("runs/experiments")
    base, start = scales.sft_configs(scales.FULL, runs)
    built = {"sft-base": base, "sft": start}
    built |= {name: scales.rl_config(name, scales.FULL, runs) for name in scales.RL_RUNS}
    committed = _committed_commands()
    assert set(committed) <= set(built)
    for name, command in committed.items():
        assert built[name] == _parsed(command), name
        assert _parsed(recipes.train_command(built[name])) == built[name]  # the argv round-trips


def test_other_callers_keep_their_recipe_values() -> None:
    from agents.config import config_from_dict

    demo = "python -m agents.train --hops 1 --snippet-chars 200 --max-turns 4 --model tiny --threads 1 "
    demo += "--num-envs 16 --max-new-tokens 32 --no-progress --algo sft --steps 240 --lr 0.003 "
    demo += "--lr-schedule cosine --warmup-steps 20 --sft-batch-size 8 --save-every 60 --out runs/demo/sft"
    assert recipes.tiny_sft("runs/demo/sft", save_every=60) == _parsed(demo)
    nsr = resolve(recipes.tiny_rl("runs/demo/nsr", "nsr", "runs/demo/sft", save_every=5))
    assert (nsr.steps, nsr.lr, nsr.kl_coef, nsr.episodes_per_step, nsr.init) == (
        15,
        1e-4,
        0.0,
        16,
        "runs/demo/sft",
    )
    # The committed SmolLM2 runs (their saved configs are resolved ones).
    smol = RESULTS / "learning_smollm2"
    for name, cfg in (
        ("smol_nsr", recipes.smollm2_rl("runs/smol_nsr", "nsr", "runs/smol_sft/checkpoints/step-00000028")),
        ("smol_ppo", recipes.smollm2_rl("runs/smol_ppo", "ppo", "runs/smol_sft/checkpoints/step-00000028")),
    ):
        saved = config_from_dict(json.loads((smol / name / "config.json").read_text()))
        assert resolve(cfg) == saved, name
    saved_sft = config_from_dict(json.loads((smol / "smol_sft" / "config.json").read_text()))
    # The published SFT ran 24 steps (saving every 12), then was resumed to its step-28 checkpoint.
    assert resolve(recipes.smollm2_sft("runs/smol_sft", steps=24, save_every=12)) == saved_sft


def test_smollm2_scale_rebuilds_the_learning_runs() -> None:
    """The SmolLM2 scale's start and arms are the recipes of the README's learning runs."""
    from agents.config import config_from_dict

    runs = Path("runs/smollm2")
    _, start = scales.sft_configs(scales.SMOLLM2, runs)
    committed = RESULTS / "learning_cpu"
    # The start is the titled SFT run's step 48 (chosen on dev; the run went on to 60).
    saved_sft = config_from_dict(json.loads((committed / "smol_sft_titled60" / "config.json").read_text()))
    same = {"out": str(runs / "sft"), "steps": 48, "keep_last": start.keep_last}
    assert resolve(start) == resolve(scales.dataclasses.replace(saved_sft, **same))
    # The arms' recipe is the pilot runs' (which started from the first SFT recipe's run).
    saved = config_from_dict(json.loads((committed / "grpo_s0" / "config.json").read_text()))
    built = scales.rl_config("grpo", scales.SMOLLM2, runs, seed=0)
    pilot = {"init": str(runs / "sft"), "out": str(runs / "grpo_s0")}
    assert resolve(built) == resolve(scales.dataclasses.replace(saved, **pilot))
    nsr = scales.rl_config("nsr", scales.SMOLLM2, runs, seed=1)
    assert nsr.out == "runs/smollm2/nsr_s1"
    # NSR's own lr and dev interval; every other field is the arms' recipe.
    assert (nsr.lr, nsr.eval_every, nsr.keep_last) == (1e-4, 25, 5) and built.lr == 2e-5
    as_grpo = {"algo": "grpo", "seed": 0, "out": built.out, "lr": built.lr, "keep_last": built.keep_last}
    as_grpo |= {"eval_every": built.eval_every, "save_every": built.save_every}
    assert resolve(scales.dataclasses.replace(nsr, **as_grpo)) == resolve(built)
    assert scales.SMOLLM2.run_names(["grpo", "nsr"]) == ["grpo_s0", "grpo_s1", "nsr_s0", "nsr_s1"]
    assert scales.FULL.run_names(["grpo"]) == ["grpo"]
    no_retry = scales.rl_config("grpo-no-retry", scales.SMOLLM2, runs, seed=1)
    assert (no_retry.algo, no_retry.reward_preset, no_retry.seed) == ("grpo", "rezero-no-retry", 1)
    varied = scales.varied_sft_config(scales.SMOLLM2, runs)
    assert resolve(varied) == resolve(
        scales.dataclasses.replace(start, out=varied.out, sft_source="oracle-varied")
    )
    more = scales.razor_sft_config(scales.SMOLLM2, runs)
    assert (more.init, more.steps, more.eval_every, more.save_every) == ("runs/smollm2/sft", 48, 12, 12)
    assert more.sft_source == "oracle-titled" and more.seed == 1
    assert more.keep_last >= more.steps // more.save_every  # every checkpoint kept for the razor
    rejection = scales.rl_config("rs-sft", scales.SMOLLM2, runs)
    assert (rejection.algo, rejection.sft_source, rejection.train_layers) == ("sft", "rejection", 4)


def test_seeds_pool_per_question_and_pass_at_k_averages_seeds(tmp_path: Path) -> None:
    ctx = common.Context(scale=scales.SMOLLM2, runs=tmp_path, results=tmp_path, jobs=1)
    # Question a: seed 0 always right, seed 1 never; question b: both right once in two samples.
    rows = {
        "sft": [_row("a", s, False, ["q"]) for s in range(2)]
        + [_row("b", s, s == 0, ["q"]) for s in range(2)]
    }
    for arm in ctx.scale.arms.passk:
        rows[f"{arm}_s0"] = [_row("a", s, True, ["q"]) for s in range(2)] + [
            _row("b", s, s == 0, ["q"]) for s in range(2)
        ]
        rows[f"{arm}_s1"] = [_row("a", s, False, ["q"]) for s in range(2)] + [
            _row("b", s, s == 1, ["q"]) for s in range(2)
        ]
    curves = passk.per_question_curves(ctx, rows, [1, 2])
    # Seed means of per-seed pass@k, not pass@k of the 4 pooled samples (which would be 1 at k = 2).
    assert curves["grpo"][2].tolist() == [0.5, 1.0] and curves["grpo"][1].tolist() == [0.5, 0.5]
    pooled = ctx.pooled(rows, ["grpo"])
    assert (
        len(pooled["grpo"]) == 8 and paired_difference(pooled["grpo"], rows["sft"], "correct")["mean"] == 0.25
    )
    crossing = passk.crossing(curves["grpo"], curves["sft"], n_resamples=50)
    assert crossing["k"] is None and crossing["share_never"] > 0  # the start never reaches the arm


# ---------------------------------------------------------------------------------------------- end to end


def test_python_dash_m_runs_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.experiments", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "{persistence,passk,diversity,hacking,razor,status}" in result.stdout and "--quick" in result.stdout
    )


def test_hacking_probes_in_a_worker(tmp_path: Path) -> None:
    """The scripted half of ``hacking`` at the quick scale: played once, then read back."""
    ctx = common.Context(scale=scales.QUICK, runs=tmp_path / "runs", results=tmp_path / "res", jobs=1)
    rows = hacking.probe_rows(ctx)
    assert list(rows) == [f"{p}/{a}" for p in hacking.PRESETS for a in hacking.PROBES]
    assert {len(r) for r in rows.values()} == {scales.QUICK.probe_questions}
    strict, lenient = (
        common.behaviour(rows["rezero-strict/repeat-query"]),
        common.behaviour(rows["rezero/repeat-query"]),
    )
    assert strict["repeated_query_rate"] == lenient["repeated_query_rate"] > 0  # same episodes, other rewards
    assert strict["reward"]["mean"] < lenient["reward"]["mean"]
    files = sorted((tmp_path / "runs" / "samples").rglob("*__factbook.json"))
    assert {f.relative_to(tmp_path / "runs" / "samples").as_posix() for f in files} == {
        f"probe-{p}/{a}__factbook.json" for p in hacking.PRESETS for a in hacking.PROBES
    }
    stamps = [f.stat().st_mtime_ns for f in files]
    assert hacking.probe_rows(ctx) == rows
    assert [f.stat().st_mtime_ns for f in files] == stamps


@pytest.mark.slow
def test_persistence_quick_end_to_end(tmp_path: Path) -> None:
    """persistence --quick: trains the tiny SFT start and two 1-step PPO runs, writes parsable results."""
    main(["persistence", "--quick", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")])
    out = tmp_path / "res" / "persistence"
    payload = json.loads((out / "results.json").read_text())
    assert set(payload["figures"]) == {"sft", "ppo-rezero", "ppo-no-retry"}
    assert payload["figures"]["sft"]["n_questions"] == scales.QUICK.eval_questions
    for name in ("ppo-rezero", "ppo-no-retry"):
        lines = (out / f"{name}_metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(scales.QUICK.rl_steps))
    assert (out / "results.md").read_text().startswith("# Persistence")
    assert (out / "persistence.png").read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(payload["differences"]["em: ppo-rezero - ppo-no-retry"]["mean"])
    samples = tmp_path / "runs" / "samples" / "greedy"
    rows = json.loads((samples / "sft__factbook.json").read_text())["rows"]
    assert all(isinstance(row["generated_tokens"], int) and row["generated_tokens"] > 0 for row in rows)


@pytest.mark.slow
def test_razor_quick_end_to_end(tmp_path: Path) -> None:
    """razor --quick: sft-more and GRPO checkpoints measured on every forgetting measure."""
    from benchmarks.experiments import razor

    main(["razor", "--quick", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")])
    payload = json.loads((tmp_path / "res" / "razor" / "results.json").read_text())
    labels = set(payload["checkpoints"])
    assert {"start", "grpo.1", "sft-more.1", "sft-more.2"} <= labels
    for measure in razor.MEASURES:
        assert set(payload["measures"][measure]) == labels, measure
    # The start against itself: its own sampled tokens scored by the same weights.
    assert abs(payload["measures"]["kl_to_start"]["start"]["mean"]) < 1e-3
    assert payload["measures"]["text_nll"]["start"]["mean"] > 0
    assert payload["matched"] and set(payload["fits"]) == set(razor.FORGETTING)
    assert (tmp_path / "res" / "razor" / "razor.png").read_bytes()[:4] == b"\x89PNG"


def test_status_lists_every_run_and_its_progress(tmp_path: Path) -> None:
    from benchmarks.experiments import status

    runs = tmp_path / "runs"
    (runs / "grpo_s0").mkdir(parents=True)
    lines = [{"step": s, "step_cpu_time": 60.0, "wall_time": 90.0 * (s + 1)} for s in range(3)]
    (runs / "grpo_s0" / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    ctx = common.Context(scale=scales.SMOLLM2, runs=runs, results=tmp_path / "res", jobs=1)
    entries = status.run(ctx)["runs"]
    assert {
        "sft",
        "sft-varied",
        "sft-more",
        "grpo_s0",
        "grpo_s1",
        "grpo-no-retry_s1",
        "grpo-rezero_s0",
    } <= set(entries)
    assert entries["grpo_s0"]["experiments"] == [
        "diversity",
        "hacking",
        "learning",
        "passk",
        "persistence",
        "razor",
    ]
    assert entries["rs-sft_s1"]["experiments"] == ["learning"]
    assert status.state(entries["grpo_s0"]) == "at step 0 of 100 (logged 3)"
    assert status.state(entries["nsr_s1"]) == "not started"
    assert "0 of " in (tmp_path / "res" / "status" / "results.md").read_text()
    written = json.loads((tmp_path / "res" / "status" / "results.json").read_text())
    assert written["machine"]["cores"] >= 1 and written["runs"]["grpo_s0"]["machines"] == []
