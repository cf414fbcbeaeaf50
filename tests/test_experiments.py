"""The experiments module: its statistics on hand-made episodes, and one experiment end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import experiments as ex


def _row(qid: str, sample: int, correct: bool, queries: list[str], answer: str | None = "x") -> dict:
    return {
        "qid": qid,
        "sample": sample,
        "correct": correct,
        "reward": float(correct),
        "breakdown": {"retry": 0.5},
        "queries": queries,
        "searches": len(queries),
        "repeats": ex.repeated_searches(queries),
        "answer": answer,
    }


def test_repeated_searches_counts_normalized_repeats_only() -> None:
    assert ex.repeated_searches([]) == 0
    assert ex.repeated_searches(["capital of France", "France capital"]) == 0
    assert ex.repeated_searches(["capital of France", "capital of france!", "capital of France"]) == 2


def test_correct_matrix_orders_questions_and_samples() -> None:
    rows = [_row("b", 1, True, []), _row("a", 0, False, []), _row("b", 0, False, []), _row("a", 1, True, [])]
    assert ex.correct_matrix(rows).tolist() == [[False, True], [False, True]]


def test_passk_curve_rises_with_k_and_has_intervals() -> None:
    rows = [_row(q, s, s == 0 and q == "a", []) for q in "abcd" for s in range(4)]
    curves = ex.passk_curves({"p": rows}, [1, 2, 4])
    means = [curves["p"][k]["mean"] for k in (1, 2, 4)]
    assert means == pytest.approx([1 / 16, 1 / 8, 1 / 4])
    assert all(curves["p"][k]["low"] <= curves["p"][k]["mean"] <= curves["p"][k]["high"] for k in (1, 2, 4))


def test_behaviour_repeat_rate_and_em() -> None:
    rows = [_row("a", 0, True, ["q1", "q1", "q2"]), _row("b", 0, False, ["q3"])]
    figures = ex.behaviour(rows)
    assert figures["repeated_query_rate"] == pytest.approx(1 / 4)
    assert figures["em"]["mean"] == pytest.approx(0.5)
    assert figures["searches_per_episode"]["mean"] == pytest.approx(2.0)
    assert figures["n_questions"] == 2


def test_behaviour_without_searches_reports_no_rate() -> None:
    assert ex.behaviour([_row("a", 0, False, [])])["repeated_query_rate"] is None


def test_question_diversity_collapsed_vs_spread() -> None:
    collapsed = [_row("a", s, False, ["capital of Peru"], "lima") for s in range(4)]
    spread = [
        _row("a", s, False, [f"query {w}"], f"ans{s}") for s, w in enumerate(["one", "two", "three", "four"])
    ]
    narrow, wide = ex.question_diversity(collapsed)["a"], ex.question_diversity(spread)["a"]
    assert narrow["distinct_queries"] == 1 and wide["distinct_queries"] == 4
    assert narrow["unique_query_ratio"] == pytest.approx(0.25) and wide["unique_query_ratio"] == 1.0
    assert narrow["first_query_similarity"] == pytest.approx(1.0)
    assert wide["first_query_similarity"] < 1.0
    assert (narrow["distinct_answers"], wide["distinct_answers"]) == (1.0, 4.0)


def test_paired_difference_over_common_questions() -> None:
    a = [_row("a", 0, True, []), _row("b", 0, True, [])]
    b = [_row("a", 0, False, []), _row("b", 0, True, []), _row("c", 0, False, [])]
    diff = ex.paired(a, b, lambda r: r["correct"])
    assert diff["mean"] == pytest.approx(0.5) and diff["n"] == 2


def test_rl_commands_share_the_sft_start() -> None:
    from pathlib import Path

    for name, (algo, preset) in ex.RL_RUNS.items():
        out, args = ex.rl_command(name, ex.FULL, Path("runs/x"))
        assert out == Path("runs/x") / name
        assert args[args.index("--algo") + 1] == algo
        assert args[args.index("--reward-preset") + 1] == preset
        assert args[args.index("--init") + 1] == str(Path("runs/x") / "sft")


@pytest.mark.slow
def test_persistence_quick_end_to_end(tmp_path) -> None:
    """persistence --quick: trains the tiny SFT start and two 1-step PPO runs, writes parsable results."""
    ex.main(["persistence", "--quick", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")])
    out = tmp_path / "res" / "persistence"
    payload = json.loads((out / "results.json").read_text())
    assert set(payload["figures"]) == {"sft", "ppo-rezero", "ppo-no-retry"}
    assert payload["figures"]["sft"]["n_questions"] == ex.QUICK.eval_questions
    for name in ("ppo-rezero", "ppo-no-retry"):
        lines = (out / f"{name}_metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(ex.QUICK.rl_steps))
    assert (out / "results.md").read_text().startswith("# Persistence")
    assert (out / "persistence.png").read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(payload["differences"]["em: ppo-rezero - ppo-no-retry"]["mean"])
