"""A warm start for TRL (issue 17): oracle demonstrations as tool-calling chats for SFTTrainer.

Untrained, neither the tiny model nor SmolLM2 emits a tool call, so GRPO from them earns reward 0
(see tests/test_trl.py). ``export_demonstrations`` writes the episodes to fine-tune on first:
each call and result is checked here against the env itself. Then TRL's real ``SFTTrainer``
warm-starts the tiny model on them, and TRL's real ``GRPOTrainer`` with ``environment_factory``
trains it on env rewards: its tool calls reach the env (``benchmarks.trl_recipe``, the recipe the
README gives for SmolLM2, at the tiny model's size).
"""

from __future__ import annotations

import json
from typing import Any

import datasets  # (`make test` installs the trl extra: missing TRL fails, never skips)
import pytest
import torch
import trl  # noqa: F401

from benchmarks.trl_recipe import (
    RecipeConfig,
    evaluate_tool_use,
    grpo_trainer,
    prepare_tokenizer,
    sft_warm_start,
)
from searchenv.integrations.trl import (
    FINAL_REPLY,
    SYSTEM_PROMPT,
    SearchQAToolEnv,
    export_dataset,
    export_demonstrations,
    tool_schemas,
)
from searchenv.observations import ANSWER_RECEIVED

torch.set_num_threads(1)

ENV_KWARGS: dict[str, Any] = {
    "max_turns": 3,
    "top_k": 2,
    "snippet_chars": 100,
    "reward_preset": "rezero-strict",
}


@pytest.fixture(scope="module")
def demos() -> Any:
    return export_demonstrations("train", hops=1, limit=8, seed=0, **ENV_KWARGS)


def test_demonstrations_are_tool_calling_chats_that_replay_in_the_env(demos: Any) -> None:
    assert len(demos) == 8 and all(demos["correct"])
    assert json.loads(demos[0]["tools"]) == tool_schemas()
    env = SearchQAToolEnv("factbook", "train", **ENV_KWARGS)
    # The schemas GRPOTrainer builds from the env's bound methods, in its order (by name).
    from transformers.utils import get_json_schema

    assert tool_schemas() == [get_json_schema(getattr(env, name)) for name in ("answer", "read", "search")]
    for row in demos:
        messages = row["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert messages[1] == {"role": "user", "content": env.reset(question_id=row["question_id"])}
        calls = [m for m in messages if m.get("tool_calls")]
        results = [m for m in messages if m["role"] == "tool"]
        assert len(calls) == len(results) >= 2
        for call, result in zip(calls, results):
            function = call["tool_calls"][0]["function"]
            assert set(function["arguments"]) == {
                {"search": "query", "read": "doc_id", "answer": "answer"}[function["name"]]
            }
            assert result["name"] == function["name"]
            # The recorded result is what the env returns for that call.
            assert getattr(env, function["name"])(**function["arguments"]) == result["content"]
        assert calls[-1]["tool_calls"][0]["function"]["name"] == "answer"
        assert results[-1]["content"] == ANSWER_RECEIVED
        answer = calls[-1]["tool_calls"][0]["function"]["arguments"]["answer"]
        assert messages[-1] == {"role": "assistant", "content": FINAL_REPLY.format(answer=answer)}
        assert env.correct and env.reward == pytest.approx(row["reward"])


# -- SFT, then GRPO, with TRL's real trainers ---------------------------------------------------

# The recipe's short episodes (a search, then an answer): ~1,100 tiny-model tokens a demonstration,
# ~900 of them the system message with the tools' schemas, as GRPOTrainer renders it. The tiny
# model starts from random weights, so it learns the format by memorising one demonstration
# (measured here: 4 demonstrations at lr 3e-3 or 1e-2 gave no tool call after 20-30 steps; one,
# at lr 3e-3, loss 7.1 -> 1.3 in 30 steps, the reply taking the call's shape). ~1.4 CPU s a step.
RECIPE_ENV = RecipeConfig().env_kwargs()
SFT_STEPS = 60
SFT_LR = 3e-3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from agents.lm.models import env_vocabulary_texts, load_model
    from searchenv.resources import shared_task

    task = shared_task("factbook")
    texts = env_vocabulary_texts(
        [(p.doc_id, p.title, p.text) for p in list(task.corpus.passages())[:300]],
        [q.question for q in task.questions("train")[:200]],
    )
    model, tokenizer = load_model(
        "tiny", cache_dir=tmp_path_factory.mktemp("models"), corpus_texts=texts, seed=0
    )
    return model, prepare_tokenizer(tokenizer)


def test_sft_warm_start_makes_tool_calls_that_grpo_trains_on(tiny: tuple[Any, Any], tmp_path: Any) -> None:
    from transformers import TrainerCallback

    model, tokenizer = tiny
    demos = export_demonstrations("train", hops=1, limit=1, seed=0, **RECIPE_ENV)
    rows = list(export_dataset("train", hops=1, limit=1, seed=0))  # the demonstrated question
    assert [row["question_id"] for row in rows] == demos["question_id"]

    before = evaluate_tool_use(model, tokenizer, rows, RECIPE_ENV, max_new_tokens=64)
    assert before["tool_call_rate"] == 0 and before["calls_per_episode"] == 0 and before["reward"] == 0

    sft = sft_warm_start(
        model, tokenizer, demos, output_dir=tmp_path / "sft", steps=SFT_STEPS, learning_rate=SFT_LR
    )
    losses = [entry["loss"] for entry in sft.state.log_history if "loss" in entry]
    assert len(losses) == SFT_STEPS and sum(losses[-4:]) < sum(losses[:4]) / 2

    after = evaluate_tool_use(model, tokenizer, rows, RECIPE_ENV, max_new_tokens=64)
    # Greedy replies, parsed by TRL's parser and run by name and arguments in the env (a search
    # call is ~50 tiny-model tokens: 40 cut it short, and TRL then reads it as plain text).
    assert after["tool_call_rate"] == 1 > before["tool_call_rate"]
    assert after["records"][0]["calls"][0] == "search" and after["reward"] > 0

    episodes: list[list[tuple[tuple[dict[str, Any], ...], float]]] = []

    class RecordEpisodes(TrainerCallback):  # after the update, before the next batch resets the envs
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            envs: list[SearchQAToolEnv] = trainer.environments or []
            episodes.append([(env.actions, env.reward) for env in envs])

    before_grpo = [p.detach().clone() for p in model.parameters()]
    trainer = grpo_trainer(
        model,
        tokenizer,
        datasets.Dataset.from_list(rows),
        RECIPE_ENV,
        output_dir=tmp_path / "grpo",
        steps=2,
        learning_rate=1e-5,  # at 1e-3 the first update undid the format: step 2 made no call
        num_generations=2,
        callbacks=[RecordEpisodes()],
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "rewards/searchqa_reward/mean" in entry]
    assert len(logs) == len(episodes) == 2
    # TRL parsed the warm-started model's sampled calls and ran them in the env (step 1 is the SFT
    # model's own rollouts); env rewards reached its logs.
    assert logs[0]["tools/call_frequency"] > 0
    assert sum(log["rewards/searchqa_reward/mean"] for log in logs) > 0
    for log, step in zip(logs, episodes):
        assert log["rewards/searchqa_reward/mean"] == pytest.approx(
            sum(r for _, r in step) / len(step), abs=1e-5
        )
    assert any(actions for step in episodes for actions, _ in step)
    # A group whose two rollouts earn the same reward has zero advantage and moves nothing.
    changed = any(not torch.equal(a, b) for a, b in zip(before_grpo, model.parameters()))
    assert changed == any(log["reward_std"] > 0 for log in logs)


def test_recipe_trains_only_the_top_layers_and_checks_its_config(tiny: tuple[Any, Any]) -> None:
    from benchmarks.trl_recipe import train_top_layers

    model, _ = tiny
    total = sum(p.numel() for p in model.parameters())
    top = train_top_layers(model, 1)
    expected = sum(p.numel() for p in model.model.layers[-1].parameters()) + model.model.norm.weight.numel()
    assert top == expected < total
    assert not model.model.embed_tokens.weight.requires_grad
    assert not any(p.requires_grad for p in model.model.layers[0].parameters())
    with pytest.raises(ValueError, match="has 4 decoder layers"):
        train_top_layers(model, 5)
    assert train_top_layers(model, None) == total
    with pytest.raises(ValueError, match="demos must be >= 1"):
        RecipeConfig(demos=0)
    with pytest.raises(ValueError, match="train_layers"):
        RecipeConfig(train_layers=0)
