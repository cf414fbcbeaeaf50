"""The TRL bridge: the tool env, the dataset export, and real GRPOTrainer steps on env rewards."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import datasets  # noqa: F401  (`make test` installs the trl extra: missing TRL fails, never skips)
import pytest
import torch
import trl  # noqa: F401

from searchenv.env import SearchQAEnv
from searchenv.integrations.trl import (
    EPISODE_OVER,
    OUT_OF_TURNS,
    SYSTEM_PROMPT,
    SearchQAToolEnv,
    export_dataset,
    make_env_factory,
    searchqa_reward,
    use_tool_chat_template,
)
from searchenv.observations import ANSWER_RECEIVED, is_error, parse_hits, parse_question
from searchenv.questions import sample_question_ids, select_questions

torch.set_num_threads(1)

ENV_KWARGS: dict[str, Any] = {"split": "train", "max_turns": 3, "top_k": 2, "reward_preset": "rezero-strict"}


@pytest.fixture(scope="module")
def factory():
    return make_env_factory("factbook", **ENV_KWARGS)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return list(export_dataset("train", hops=1, limit=4, seed=0))


def _replay(question_id: str, actions: tuple[dict[str, Any], ...], **overrides: Any) -> float:
    """The reward a plain terminal-mode SearchQAEnv pays for these actions on this question."""
    env = SearchQAEnv(**{**ENV_KWARGS, **overrides})
    env.reset(options={"question_id": question_id})
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return reward
    raise AssertionError("the replayed episode did not end")


# -- the tool env -----------------------------------------------------------------------------


def test_export_has_the_columns_reset_needs_and_asks_exactly_that_question(factory, rows) -> None:
    dataset = export_dataset("train", hops=1, limit=4, seed=0)
    assert set(dataset.column_names) == {"prompt", "question_id", "split", "question", "kind", "hops"}
    expected = sample_question_ids(select_questions("factbook", "train", hops=1), 4, seed=0)
    assert dataset["question_id"] == expected
    assert {row["hops"] for row in rows} == {1}
    for row in rows:
        assert row["prompt"] == [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": ""},
        ]
        env = factory()
        prompt = env.reset(**row)
        assert parse_question(prompt) == row["question"]
        assert env.question_id == row["question_id"]
        assert "search(query)" in prompt and "3 turns" in prompt
    assert len(export_dataset("dev", limit=3, seed=1)) == 3


def test_only_the_three_tools_are_exposed_with_a_schema(factory) -> None:
    from transformers.utils import get_json_schema

    env = factory()
    # The rule TRL applies: every public function of the class but reset and get_reward is a tool.
    tools = [
        name
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if not name.startswith("_") and name not in ("reset", "get_reward")
    ]
    assert sorted(tools) == ["answer", "read", "search"]
    arguments = {name: get_json_schema(getattr(env, name))["function"]["parameters"] for name in tools}
    assert arguments["search"]["required"] == ["query"]
    assert arguments["read"]["properties"]["doc_id"]["type"] == "string"


def test_an_episode_steps_the_env_and_earns_its_reward(factory, rows) -> None:
    env = factory()
    env.reset(**rows[0])
    hits = parse_hits(env.search(rows[0]["question"]))
    assert hits
    assert hits[0].doc_id in env.read(hits[0].doc_id)
    assert env.reward_breakdown is None and env.correct is None and not env.done
    assert env.answer("certainly not this") == ANSWER_RECEIVED
    assert env.done and env.correct is False and set(env.reward_breakdown or {}) >= {"correctness", "format"}
    assert [a["tool"] for a in env.actions] == ["search", "read", "answer"]
    assert env.reward == pytest.approx(_replay(rows[0]["question_id"], env.actions), abs=1e-9)
    assert searchqa_reward(environments=[env, object()], completions=[]) == [env.reward, None]


def test_tool_calls_after_the_end_are_harmless(factory, rows) -> None:
    env = factory()
    env.reset(**rows[1])
    env.answer("x")
    reward, actions = env.reward, env.actions
    for call in (lambda: env.search("more"), lambda: env.read("fr/government/000"), lambda: env.answer("y")):
        assert call() == EPISODE_OVER.format(reason="answered")
    assert (env.reward, env.actions) == (reward, actions)
    env.reset(**rows[1])  # a reused instance starts afresh, as TRL's pool reuses them
    assert not env.done and env.actions == ()
    for query in ("a", "b"):
        env.search(query)
    assert env.search("c").endswith(OUT_OF_TURNS)
    assert env.search("d") == EPISODE_OVER.format(reason="out of turns")
    assert env.reward == pytest.approx(_replay(rows[1]["question_id"], env.actions), abs=1e-9)


def test_an_unanswered_episode_is_scored_as_truncated_where_it_stopped(factory, rows) -> None:
    env = factory()
    env.reset(**rows[2])
    env.search(rows[2]["question"])  # ...and the model stops calling tools: 1 of 3 turns used
    assert not env.done
    assert env.reward == pytest.approx(_replay(rows[2]["question_id"], env.actions, max_turns=1), abs=1e-9)


def test_an_unknown_doc_id_is_an_explanatory_observation(factory, rows) -> None:
    env = factory()
    env.reset(**rows[0])
    observation = env.read("xx/nowhere/999")
    assert is_error(observation) and "Unknown doc id 'xx/nowhere/999'" in observation
    assert "as shown in search results" in observation and "Turns left: 2" in observation


def test_bad_arguments_get_clear_errors(factory, rows) -> None:
    env = factory()
    env.reset(**rows[0])
    assert "must be a string, not int" in env.search(5)
    assert "tag is empty" in env.answer("   ")
    with pytest.raises(TypeError, match="unexpected keyword argument 'q'"):
        env.search(**{"q": "x"})  # what TRL runs for a misnamed argument; it reports the text
    with pytest.raises(ValueError, match="needs a 'question_id' column"):
        env.reset(prompt=rows[0]["prompt"])
    with pytest.raises(ValueError, match="is not in the 'test' split"):
        env.reset(question_id=rows[0]["question_id"], split="test")
    with pytest.raises(RuntimeError, match="reset"):
        factory().search("x")
    with pytest.raises(ValueError, match="reward_mode"):
        make_env_factory("factbook", reward_mode="terminal")
    with pytest.raises(ValueError):
        make_env_factory("factbook", reward_preset="no-such-preset")
    with pytest.raises(ValueError, match="environment_factory"):
        searchqa_reward(completions=[])
    with pytest.raises(ValueError, match="limit must be >= 1"):
        export_dataset("train", limit=0)


# -- real GRPO steps --------------------------------------------------------------------------


def _tool_call(name: str, arguments: dict[str, str]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def scripted_generate(tokenizer: Any, golds: dict[str, str]) -> Any:
    """A stand-in for ``model.generate``: search the question, then answer (gold on even rows).

    An untrained model emits no tool call, so GRPO on it has reward 0 and no gradient; this
    policy writes real tool-call text that TRL must parse and execute against the env.
    """

    def generate(input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        replies = []
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            text = tokenizer.decode(ids[mask.bool()])
            question = re.search(r"Question: (.*?)<\|im_end\|>", text, re.DOTALL).group(1)  # type: ignore[union-attr]
            responses = text.count("<tool_response>")
            if responses == 0:
                reply = _tool_call("search", {"query": question})
            elif responses == 1:
                reply = _tool_call("answer", {"answer": golds[question] if row % 2 == 0 else "no idea"})
            else:
                reply = "Done."
            replies.append(tokenizer.encode(reply + tokenizer.eos_token))
        width = max(map(len, replies))
        padded = [reply + [tokenizer.pad_token_id] * (width - len(reply)) for reply in replies]
        return torch.cat([input_ids, torch.tensor(padded, dtype=input_ids.dtype)], dim=1)

    return generate


def test_grpo_trainer_trains_on_env_rewards(factory, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is marked experimental
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agents.lm.models import env_vocabulary_texts, load_model
    from searchenv.resources import shared_task

    task = shared_task("factbook")
    texts = env_vocabulary_texts(
        [(p.doc_id, p.title, p.text) for p in list(task.corpus.passages())[:300]],
        [q.question for q in task.questions("train")[:200]],
    )
    model, tokenizer = load_model("tiny", cache_dir=tmp_path / "models", corpus_texts=texts, seed=0)
    use_tool_chat_template(tokenizer)
    dataset = export_dataset("train", hops=1, limit=4, seed=0)
    golds = {q.question: q.answers[0] for q in task.questions("train") if q.qid in dataset["question_id"]}
    model.generate = scripted_generate(tokenizer, golds)
    before = [p.detach().clone() for p in model.parameters()]

    episodes: list[list[tuple[Any, tuple, float]]] = []

    class RecordEpisodes(TrainerCallback):
        # After the update and before the next batch resets TRL's pooled envs.
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            envs: list[SearchQAToolEnv] = trainer.environments or []
            episodes.append([(env.question_id, env.actions, env.reward) for env in envs])

    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=2,  # one GRPO group of two rollouts per step
        num_generations=2,
        gradient_checkpointing=False,  # TRL's default; recomputing a 5M model only costs time
        max_steps=2,
        max_completion_length=512,
        max_tool_calling_iterations=4,
        learning_rate=1e-2,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=args,
        reward_funcs=searchqa_reward,
        train_dataset=dataset,
        environment_factory=factory,
        callbacks=[RecordEpisodes()],
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "rewards/searchqa_reward/mean" in entry]
    assert len(logs) == len(episodes) == 2
    for log, step in zip(logs, episodes):
        assert len(step) == 2
        for _, actions, _ in step:
            assert [a["tool"] for a in actions] == ["search", "answer"]  # TRL parsed and ran the calls
        # Replayed from scratch in a plain env, the same actions earn what TRL logged.
        replayed = [_replay(question_id, actions) for question_id, actions, _ in step]
        assert log["rewards/searchqa_reward/mean"] == pytest.approx(sum(replayed) / 2, abs=1e-5)
        assert [reward for *_, reward in step] == pytest.approx(replayed, abs=1e-9)
        assert replayed[0] > replayed[1]  # in the group, the gold answer beats "no idea"
        assert log["reward_std"] > 0 and log["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
