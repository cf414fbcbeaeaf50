"""Tests of benchmarks.leaderboard and its engine, benchmarks.evaluation: end to end on scripted
agents, caching, interruption, question picking, token counts, summaries."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import evaluation
from benchmarks.evaluation import (
    Evaluation,
    RunConfig,
    planned_episodes,
    question_ids_for,
    resolve_agent,
    run_evaluations,
)
from benchmarks.leaderboard import compare_pairs, main, render_markdown, summarize_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AGENTS = ["random", "bm25", "oracle"]
TINY = ["--max-questions", "3", "--samples-per-question", "2", "--seeds", "0", "--num-envs", "3"]
# rank_bm25 on the 8k-passage Factbook costs milliseconds per query, while bm25s with numba spends
# ~8 s compiling on its first query in a process: the leaderboard logic is the same either way.
FAST = ["--bootstrap-resamples", "200", "--no-progress", "--backend", "rank_bm25"]
REAL_RUN = evaluation.play_episodes


def counting_runs(monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None) -> Counter[str]:
    """Wrap the episode runner: count runs per policy name, optionally crash on one policy."""
    calls: Counter[str] = Counter()

    def wrapper(policy: Any, *args: Any, **kwargs: Any) -> list[Any]:
        calls[policy.name] += 1
        if policy.name == fail_on:
            raise RuntimeError(f"simulated crash while running {policy.name}")
        return REAL_RUN(policy, *args, **kwargs)

    monkeypatch.setattr(evaluation, "play_episodes", wrapper)
    return calls


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("leaderboard")
    assert main(["--agents", *AGENTS, *TINY, *FAST, "--out", str(out), "--compare", "oracle", "random"]) == 0
    return out


def test_end_to_end_outputs_parse(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = json.loads((finished_run / "results.json").read_text())
    assert [p["agent"] for p in results["pairs"]] == AGENTS
    by_agent = {p["agent"]: p["summary"] for p in results["pairs"]}
    for summary in by_agent.values():
        assert summary["em"]["n_questions"] == 3 and summary["em"]["n_episodes"] == 6
        assert set(summary["pass_at_k"]) == {"1", "2"}
        assert summary["pass_at_k"]["1"]["mean"] <= summary["pass_at_k"]["2"]["mean"]
        assert summary["em"]["low"] <= summary["em"]["mean"] <= summary["em"]["high"]
        assert summary["reward_components"]
        assert summary["tokens_generated"] is None  # scripted agents keep no token counter
    # The oracle answers the canonical gold answer: the upper bound.
    assert by_agent["oracle"]["em"]["mean"] == 1.0
    assert by_agent["oracle"]["pass_at_k"]["2"]["mean"] == 1.0
    assert by_agent["random"]["em"]["mean"] <= by_agent["oracle"]["em"]["mean"]
    assert by_agent["oracle"]["behaviour"]["searches_per_episode"] >= 1.0
    assert (
        by_agent["random"]["behaviour"]["format_error_rate"]
        >= by_agent["oracle"]["behaviour"]["format_error_rate"]
    )

    (comparison,) = results["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("oracle", "random")
    assert comparison["diff"]["em"]["mean"] >= 0.0

    for agent in AGENTS:
        pair = json.loads((finished_run / f"{agent}__factbook.json").read_text())
        assert len(pair["rows"]) == 6 and pair["key"]

    markdown = (finished_run / "leaderboard.md").read_text()
    for agent in AGENTS:
        assert (
            sum(line.startswith(f"| {agent} |") for line in markdown.splitlines()) == 3
        )  # main, pass@k, rewards
    assert "oracle - random" in markdown

    for name in ("passk.png", "rewards.png"):
        path = finished_run / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert str(path) in results["plots"]


def test_rerun_with_same_arguments_loads_every_pair(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.glob("*__factbook.json")}
    calls = counting_runs(monkeypatch)
    assert main(["--agents", *AGENTS, *TINY, *FAST, "--out", str(finished_run), "--no-plots"]) == 0
    assert sum(calls.values()) == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in finished_run.glob("*__factbook.json")}


def test_interrupted_run_resumes_without_redoing_finished_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--agents", "random", "bm25", *TINY, *FAST, "--out", str(tmp_path), "--no-plots"]
    crashed = counting_runs(monkeypatch, fail_on="bm25")
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(argv)
    assert crashed == Counter({"random": 1, "bm25": 1})
    random_file = tmp_path / "random__factbook.json"
    assert random_file.exists() and not (tmp_path / "bm25__factbook.json").exists()
    assert not (tmp_path / "results.json").exists()
    saved_bytes, saved_mtime = random_file.read_bytes(), random_file.stat().st_mtime_ns

    resumed = counting_runs(monkeypatch)
    assert main(argv) == 0
    assert resumed == Counter({"bm25": 1})  # random was loaded, not played again
    assert random_file.read_bytes() == saved_bytes and random_file.stat().st_mtime_ns == saved_mtime
    results = json.loads((tmp_path / "results.json").read_text())
    assert [p["agent"] for p in results["pairs"]] == ["random", "bm25"]

    # Changed arguments key different pair files: both agents run again.
    changed = counting_runs(monkeypatch)
    argv_changed = [a if a != "3" else "2" for a in argv]  # --max-questions 2
    assert main(argv_changed) == 0
    assert changed == Counter({"random": 1, "bm25": 1})
    assert json.loads(random_file.read_text())["config"]["max_questions"] == 2


def test_damaged_pair_file_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "random__factbook.json").write_text("{ truncated")
    calls = counting_runs(monkeypatch)
    argv = ["--agents", "random", "--max-questions", "2", "--seeds", "0", *FAST, "--out", str(tmp_path)]
    assert main([*argv, "--no-plots"]) == 0
    assert calls == Counter({"random": 1})
    assert json.loads((tmp_path / "random__factbook.json").read_text())["rows"]


def test_bad_arguments_exit_with_usage_errors(tmp_path: Path) -> None:
    for argv in (
        ["--agents", "no-such-agent"],
        ["--agents", "random", "--compare", "random", "bm25"],
        ["--agents", "random", "random"],
        ["--agents", "random", "--samples-per-question", "0"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path)])
        assert exit_info.value.code == 2


def test_resolve_agent_names_and_checkpoints(tmp_path: Path) -> None:
    assert resolve_agent("bm25").kind == "scripted"
    checkpoint = tmp_path / "runs" / "sft"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    spec = resolve_agent(str(checkpoint))
    assert (spec.kind, spec.label) == ("checkpoint", "runs_sft")
    named = resolve_agent(f"my sft={checkpoint}")
    assert named.label == "my_sft" and named.fingerprint == spec.fingerprint
    (checkpoint / "model.safetensors").write_bytes(b"new weights")
    assert resolve_agent(str(checkpoint)).fingerprint != spec.fingerprint  # a new save is a new agent
    # Checkpoints of two runs at the same step: labelled by run and step, never the same.
    steps = [tmp_path / run / "checkpoints" / "step-00000050" for run in ("grpo_s0", "grpo_s1")]
    for step in steps:
        step.mkdir(parents=True)
    assert [resolve_agent(str(p)).label for p in steps] == ["grpo_s0_step-00000050", "grpo_s1_step-00000050"]
    assert [resolve_agent(f"direct={p}").label for p in steps] == [
        "direct_grpo_s0_step-00000050",
        "direct_grpo_s1_step-00000050",
    ]


def _fake_run(run: Path, dev_em_after: dict[int, float], checkpoints: list[int]) -> None:
    """A run folder with complete checkpoints and the dev EM its training logged after each step."""
    from agents import checkpoint as ckpt

    for step in checkpoints:
        folder = run / ckpt.CHECKPOINTS_FOLDER / ckpt.checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
    lines = [
        {"step": s - 1, "loss": 0.1, **({"eval_em": dev_em_after[s]} if s in dev_em_after else {})}
        for s in range(1, max(checkpoints) + 1)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_dev_chosen_checkpoint_is_the_best_evaluated_one(tmp_path: Path) -> None:
    from agents.checkpoint import dev_selected_checkpoint

    run = tmp_path / "grpo_s0"
    # Step 100's dev EM ties step 50's: the earlier wins; step 120 was never evaluated, and the
    # evaluation after step 25 has no checkpoint left (pruned), so neither competes.
    _fake_run(run, {25: 0.9, 50: 0.64, 75: 0.59, 100: 0.64}, checkpoints=[50, 75, 100, 120])
    choice = dev_selected_checkpoint(run)
    assert (choice.step, choice.dev_em) == (50, 0.64)
    assert choice.scores == ((50, 0.64), (75, 0.59), (100, 0.64))
    spec = resolve_agent(f"{run}@dev")
    assert (spec.label, Path(spec.source).name) == ("grpo_s0_dev", "step-00000050")
    assert resolve_agent(f"grpo={run}@dev").label == "grpo"
    never_evaluated = tmp_path / "no_eval"
    _fake_run(never_evaluated, {}, checkpoints=[10])
    with pytest.raises(FileNotFoundError, match="--eval-every"):
        resolve_agent(f"{never_evaluated}@dev")


@dataclasses.dataclass(frozen=True)
class WithTokens:
    """An episode result as an LM policy's: the scripted result plus its generated-token count."""

    inner: Any
    generated_tokens: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_checkpoint_agents_load_lazily_with_decoding_and_token_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[dict[str, Any]] = []

    def load_policy(path: str, **kwargs: Any) -> Any:
        from agents.scripted import make_policy

        loads.append({"path": path, **kwargs})
        return make_policy("bm25", seed=kwargs["seed"])

    def with_tokens(policy: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [WithTokens(r, 10 * len(r.record.turns)) for r in REAL_RUN(policy, *args, **kwargs)]

    # A fake agents.weights: the leaderboard must reach checkpoints through its load_policy only.
    monkeypatch.setitem(sys.modules, "agents.weights", types.SimpleNamespace(load_policy=load_policy))
    monkeypatch.setattr(evaluation, "play_episodes", with_tokens)
    run = tmp_path / "runs" / "sft"
    run.mkdir(parents=True)
    (run / "state.json").write_text("{}")
    out = tmp_path / "out"
    argv = ["--agents", f"sft={run}", "--max-questions", "2", "--samples-per-question", "2"]
    argv += ["--seeds", "0", "1", *FAST, "--out", str(out), "--no-plots", "--temperature", "0.7"]
    assert main(argv) == 0
    assert [(x["seed"], x["greedy"], x["temperature"]) for x in loads] == [(0, False, 0.7), (1, False, 0.7)]
    assert loads[0]["path"] == str(run)
    (pair,) = json.loads((out / "results.json").read_text())["pairs"]
    assert pair["agent"] == "sft"
    summary = pair["summary"]
    assert summary["em"]["n_episodes"] == 8 and set(summary["pass_at_k"]) == {"1", "2", "4"}
    rows = json.loads((out / "sft__factbook.json").read_text())["rows"]
    assert summary["tokens_generated"] == sum(10 * row["stats"]["turns"] for row in rows) > 0
    assert summary["tokens_per_episode"] == pytest.approx(summary["tokens_generated"] / 8)
    assert "| sft |" in (out / "leaderboard.md").read_text()

    assert main(argv) == 0 and len(loads) == 2  # cached
    (run / "state.json").write_text('{"step": 2}')  # a new save: the agent is evaluated again
    assert main(argv) == 0 and len(loads) == 4


# ---------------------------------------------------------------------------------------------- engine


def test_question_subset_is_the_seeded_sample_of_the_filtered_split() -> None:
    from searchenv.questions import select_questions

    config = RunConfig(max_questions=7, env_kwargs={"hops": 1})
    questions = select_questions("factbook", "test", hops=1)
    keep = np.random.default_rng(0).choice(len(questions), size=7, replace=False)
    assert question_ids_for("factbook", config) == [questions[i].qid for i in sorted(keep)]
    assert question_ids_for("factbook", RunConfig(env_kwargs={"hops": 1})) == [q.qid for q in questions]
    other = question_ids_for("factbook", dataclasses.replace(config, question_seed=1))
    assert len(other) == 7 and other != question_ids_for("factbook", config)


def test_sample_orders() -> None:
    sweep = RunConfig(samples_per_question=2)
    assert planned_episodes(["a", "b"], sweep) == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    grouped = dataclasses.replace(sweep, sample_order="grouped")
    assert planned_episodes(["a", "b"], grouped) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    with pytest.raises(ValueError, match="sample_order"):
        RunConfig(sample_order="shuffled")


def test_keys_follow_what_changes_the_episodes(tmp_path: Path) -> None:
    bm25 = Evaluation(resolve_agent("bm25"), "factbook", RunConfig(), tmp_path)
    assert bm25.path == tmp_path / "bm25__factbook.json"
    # Decoding does not change a scripted agent's episodes; the question subset does.
    assert dataclasses.replace(bm25, config=RunConfig(greedy=False, temperature=0.5)).key == bm25.key
    assert dataclasses.replace(bm25, config=RunConfig(max_questions=3)).key != bm25.key
    assert dataclasses.replace(bm25, config=RunConfig(sample_order="grouped")).key != bm25.key


def test_grouped_samples_in_a_worker_process_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"backend": "rank_bm25", "hops": 1}
    config = RunConfig(
        max_questions=2, samples_per_question=2, num_envs=2, env_kwargs=env, sample_order="grouped"
    )
    (ran,) = run_evaluations([Evaluation(resolve_agent("oracle"), "factbook", config, tmp_path)], workers=1)
    assert [(r["qid"], r["sample"]) for r in ran["rows"]] == [
        (qid, sample) for qid in ran["question_ids"] for sample in (0, 1)
    ]
    assert all(r["correct"] and r["answer"] and r["generated_tokens"] is None for r in ran["rows"])
    calls = counting_runs(monkeypatch)
    (cached,) = run_evaluations([Evaluation(resolve_agent("oracle"), "factbook", config, tmp_path)])
    assert cached == ran and not calls


# ---------------------------------------------------------------------------------------------- summaries


def synthetic_record(correct: list[list[int]], agent: str = "a") -> dict[str, Any]:
    rows = []
    for q, samples in enumerate(correct):
        for sample, ok in enumerate(samples):
            queries = [f"query {q}", f"query {q}"] if ok else [f"query {q}", f"other {sample}"]
            rows.append(
                {
                    "qid": f"q{q}",
                    "seed": 0,
                    "sample": sample,
                    "em": float(ok),
                    "f1": float(ok),
                    "cover_em": float(ok),
                    "correct": bool(ok),
                    "reward": 4.0 * ok,
                    "breakdown": {"correctness": float(ok), "format": 1.0},
                    "stats": {
                        "turns": 3,
                        "invalid_turns": 0,
                        "searches": 2,
                        "reads": 0,
                        "answered": True,
                        "had_failed_search": True,
                        "retried_after_failure": True,
                    },
                    "queries": queries,
                    "wall_time": 0.01,
                }
            )
    question_ids = [f"q{q}" for q in range(len(correct))]
    return {"agent": agent, "task": "t", "question_ids": question_ids, "rows": rows, "wall_time_s": 1.0}


def test_summarize_rows_pass_at_k_and_intervals() -> None:
    record = synthetic_record([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    summary = summarize_rows(record, seeds=[0], n_resamples=200)
    assert summary["em"]["mean"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert (summary["em"]["n_questions"], summary["em"]["n_episodes"]) == (3, 12)
    assert summary["pass_at_k"]["1"]["mean"] == pytest.approx(summary["em"]["mean"])
    assert summary["pass_at_k"]["2"]["mean"] == pytest.approx((0.5 + 1.0) / 3)
    assert summary["pass_at_k"]["4"]["mean"] == pytest.approx(2 / 3)
    assert summary["reward_components"] == {"correctness": pytest.approx(5 / 12), "format": 1.0}
    assert summary["diversity"]["distinct_queries_per_question"] == pytest.approx((4 + 1 + 5) / 3)
    assert summary["tokens_per_episode"] is None and summary["episodes_per_s"] == 12.0
    unequal = synthetic_record([[1, 0], [1]])
    with pytest.raises(ValueError, match="unequal samples"):
        summarize_rows(unequal, seeds=[0])


def test_compare_pairs_is_paired_by_question() -> None:
    strong = synthetic_record([[1, 1]] * 10)["rows"]
    weak = synthetic_record([[1, 0]] * 5 + [[0, 0]] * 5)["rows"]
    diff = compare_pairs(strong, weak, n_resamples=200)
    assert diff["em"]["mean"] == pytest.approx(1.0 - 0.25)
    assert diff["em"]["low"] > 0 and diff["em"]["n"] == 10
    assert compare_pairs(weak, strong, n_resamples=200)["em"]["high"] < 0


def test_render_markdown_has_a_row_per_agent_and_marks_significance() -> None:
    pairs = [
        {
            "agent": name,
            "task": "t",
            "summary": summarize_rows(synthetic_record(c, name), seeds=[0], n_resamples=50),
        }
        for name, c in (("good", [[1, 1]] * 6), ("bad", [[0, 0]] * 6))
    ]
    diff = compare_pairs(synthetic_record([[1, 1]] * 6)["rows"], synthetic_record([[0, 0]] * 6)["rows"], 50)
    markdown = render_markdown(pairs, [{"a": "good", "b": "bad", "task": "t", "diff": diff}], RunConfig())
    lines = markdown.splitlines()
    assert sum(line.startswith("| good |") for line in lines) == 3
    assert sum(line.startswith("| bad |") for line in lines) == 3
    assert any(line.startswith("| good - bad |") and "*" in line for line in lines)
