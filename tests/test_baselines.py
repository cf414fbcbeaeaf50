"""Search-R1's baseline rows (issue 17): ``direct`` and ``rag`` behind the Policy interface and in
the leaderboard. The episode logic and the leaderboard rows are checked with a stub generator
(fixed replies make the assertions exact); the real generate path with the tiny model."""

from __future__ import annotations

import doctest
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agents import baselines
from agents.baselines import LMBaseline
from agents.rollout import run_episodes
from benchmarks.evaluation import resolve_agent
from benchmarks.leaderboard import main as leaderboard_main
from searchenv.questions import sample_question_ids, select_questions


class StubBaseline(LMBaseline):
    """An LMBaseline whose generator returns a fixed reply and records its prompts."""

    def __init__(self, mode: str, reply: str = "Answer: Paris.") -> None:
        super().__init__(model=None, tokenizer=object(), mode=mode)
        self.reply = reply
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str]) -> list[str]:
        self.prompts.extend(prompts)
        return [self.reply] * len(prompts)


def test_agent_arguments_name_baselines_with_any_model(tmp_path: Path) -> None:
    direct = resolve_agent("direct=smollm2-135m")
    assert (direct.label, direct.kind, direct.source) == ("direct_smollm2-135m", "direct", "smollm2-135m")
    (tmp_path / "sft").mkdir()
    rag = resolve_agent(f"rag={tmp_path / 'sft'}")
    assert rag.kind == "rag" and rag.label.startswith("rag_") and rag.label.endswith("_sft")
    assert resolve_agent("bm25").kind == "scripted"
    with pytest.raises(FileNotFoundError, match="neither one of"):
        resolve_agent("direct=no-such-model")


@pytest.mark.parametrize("mode", ["direct", "rag"])
def test_direct_answers_at_once_and_rag_reads_the_retrieved_passages_first(mode: str) -> None:
    ids = sample_question_ids(select_questions("factbook", "test", hops=1), 3, seed=0)
    policy = StubBaseline(mode)
    env = {"task": "factbook", "split": "test", "max_turns": 4, "top_k": 3}
    results = run_episodes(policy, env, question_ids=ids, progress=False, num_envs=2)
    assert len(results) == 3 and len(policy.prompts) == 3
    for result in results:
        tools = [turn.tool for turn in result.record.turns]
        assert tools == (["answer"] if mode == "direct" else ["search", "answer"]), tools
        assert result.record.answer == "Paris"
    if mode == "rag":
        assert all("[1] " in prompt and "Question: " in prompt for prompt in policy.prompts)
    else:
        assert not any("[1] " in prompt for prompt in policy.prompts)


def test_the_leaderboard_has_direct_and_rag_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stub(mode: str, source: str, **_: Any) -> LMBaseline:
        return StubBaseline(mode)

    monkeypatch.setattr(baselines, "load_baseline", stub)
    leaderboard_main(
        [
            *("--agents", "direct=smollm2-135m", "rag=smollm2-135m", "bm25"),
            *("--split", "test", "--seeds", "0", "--max-questions", "4", "--hops", "1"),
            *("--out", str(tmp_path), "--no-plots", "--no-progress"),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    agents = {pair["agent"]: pair["summary"] for pair in results["pairs"]}
    assert set(agents) == {"direct_smollm2-135m", "rag_smollm2-135m", "bm25"}
    table = (tmp_path / "leaderboard.md").read_text()
    assert "| direct_smollm2-135m |" in table and "| rag_smollm2-135m |" in table


def test_doctests() -> None:
    assert doctest.testmod(baselines).failed == 0


@pytest.mark.parametrize("mode", ["direct", "rag"])
def test_a_real_model_plays_the_baseline_rows(mode: str, tmp_path: Path) -> None:
    """The tiny model's real generate path (no stub): batched prompts in, one answer action per episode."""
    from agents.lm.models import env_vocabulary_texts, load_model
    from searchenv.resources import shared_task

    task = shared_task("factbook")
    passages = [(p.doc_id, p.title, p.text) for p in list(task.corpus.passages())[:300]]
    texts = list(env_vocabulary_texts(passages, [q.question for q in task.questions("train")[:100]]))
    model, tokenizer = load_model("tiny", cache_dir=tmp_path, corpus_texts=texts, seed=0)
    policy = LMBaseline(model.eval(), tokenizer, mode, max_new_tokens=8)
    ids = sample_question_ids(select_questions("factbook", "test", hops=1), 4, seed=0)
    env = {"task": "factbook", "split": "test", "max_turns": 3, "top_k": 2}
    results = run_episodes(policy, env, question_ids=ids, progress=False, num_envs=4)
    assert len(results) == 4
    for result in results:
        tools = [turn.tool for turn in result.record.turns]
        # Every turn but rag's first is one generated answer: valid (the episode ends) or, when the
        # untrained model writes nothing usable, an invalid action that spends the turn.
        generated = tools[1:] if mode == "rag" else tools
        assert (mode == "direct" or tools[0] == "search") and generated
        assert all(tool in ("answer", None) for tool in generated), tools
        assert result.record.answer is not None or result.truncated
        assert len(tools) <= 3
