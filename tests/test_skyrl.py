"""The SkyRL bridge through the real skyrl-gym package: the plain env's rewards for the same actions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import skyrl_gym  # `make test` installs the skyrl extra: a missing package fails, never skips
from omegaconf import OmegaConf
from skyrl_gym.envs.base_text_env import BaseTextEnv

from searchenv.env import SearchQAEnv
from searchenv.integrations.skyrl import ENV_ID, SearchQASkyRLEnv
from searchenv.observations import is_error, parse_hits

CONFIG: dict[str, Any] = {
    "task": "factbook",
    "split": "dev",
    "max_turns": 4,
    "reward_preset": "rezero-strict",
}


@pytest.fixture(scope="module")
def plain() -> SearchQAEnv:
    return SearchQAEnv(**CONFIG)


def _tool_call(name: str, **arguments: str) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def _plain_rewards(plain: SearchQAEnv, question_id: str, actions: list[str]) -> tuple[list[float], dict]:
    plain.reset(options={"question_id": question_id})
    rewards, info = [], {}
    for action in actions:
        _, reward, terminated, truncated, info = plain.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    return rewards, info


def _skyrl_rewards(config: Any, question_id: str, actions: list[str]) -> tuple[list[float], list[dict]]:
    env = skyrl_gym.make(ENV_ID, env_config=config, extras={"extra_info": {"question_id": question_id}})
    env.init([{"role": "system", "content": "You answer questions."}])
    rewards, outputs = [], []
    for action in actions:
        output = env.step(action)
        rewards.append(output["reward"])
        outputs.append(output)
        if output["done"]:
            break
    return rewards, outputs


def test_importing_the_bridge_registers_its_id() -> None:
    assert ENV_ID in skyrl_gym.registry
    env = skyrl_gym.make(ENV_ID, env_config=CONFIG, extras={"question_id": "capital/fr"})
    assert isinstance(env, BaseTextEnv) and isinstance(env, SearchQASkyRLEnv)


def test_init_returns_the_row_prompt_then_the_env_prompt(plain: SearchQAEnv) -> None:
    question = plain.questions[0]
    env = skyrl_gym.make(ENV_ID, env_config=CONFIG, extras={"question_id": question.qid})
    system = {"role": "system", "content": "You answer questions."}
    messages, metadata = env.init([system])
    assert messages[0] == system and messages[1]["role"] == "user"
    assert question.question in messages[1]["content"]
    assert "answers" not in metadata and metadata["turns_left"] == CONFIG["max_turns"]
    again, _ = env.init(messages)
    assert again == messages, "a prompt that already ends with the env's prompt is not repeated"


def test_a_scripted_tag_episode_pays_the_plain_env_reward(plain: SearchQAEnv) -> None:
    question = plain.questions[0]
    plain.reset(options={"question_id": question.qid})
    doc_id = parse_hits(plain.step(f"<search>{question.question}</search>")[0])[0].doc_id
    actions = [
        f"<think>look it up</think><search>{question.question}</search>",
        f"<read>{doc_id}</read>",
        f"<answer>{question.answers[0]}</answer>",
    ]
    expected, info = _plain_rewards(plain, question.qid, actions)
    rewards, outputs = _skyrl_rewards(CONFIG, question.qid, actions)
    assert rewards == expected and sum(rewards) > 0
    assert [output["done"] for output in outputs] == [False, False, True]
    assert outputs[0]["observations"][0]["role"] == "user" and outputs[-1]["observations"] == []
    final = outputs[-1]["metadata"]
    assert final["reward_breakdown"] == info["reward_breakdown"] and final["correct"] is True
    assert [turn["tool"] for turn in final["turns"]] == ["search", "read", "answer"]
    json.dumps(final)  # SkyRL logs metadata: it must be plain data


def test_tool_call_text_with_a_malformed_call_pays_the_plain_env_reward_step_by_step(
    plain: SearchQAEnv,
) -> None:
    question = plain.questions[1]
    actions = [
        _tool_call("search", query=question.question),
        '<tool_call>{"name": "search", "arguments": {"q": "oops"}}</tool_call>',
        _tool_call("answer", answer="certainly not the answer"),
    ]
    dense = {**CONFIG, "reward_mode": "dense"}
    plain_dense = SearchQAEnv(**dense)
    expected, info = _plain_rewards(plain_dense, question.qid, actions)
    rewards, outputs = _skyrl_rewards(OmegaConf.create(dense), question.qid, actions)
    assert rewards == pytest.approx(expected) and len(rewards) == 3
    assert is_error(outputs[1]["observations"][0]["content"])
    assert outputs[1]["metadata"]["turns_left"] == CONFIG["max_turns"] - 2, "the malformed call spent a turn"
    assert outputs[-1]["metadata"]["reward_breakdown"] == info["reward_breakdown"]
    assert info["reward_breakdown"]["format"] < 1.0
    terminal, _ = _plain_rewards(plain, question.qid, actions)
    assert sum(rewards) == pytest.approx(sum(terminal))


def test_running_out_of_turns_ends_the_trajectory_with_the_plain_env_reward(plain: SearchQAEnv) -> None:
    question = plain.questions[2]
    actions = [f"<search>{question.question}</search>", "no action here", "<search>another query</search>"]
    config = {**CONFIG, "max_turns": 3}
    expected, _ = _plain_rewards(SearchQAEnv(**config), question.qid, actions)
    rewards, outputs = _skyrl_rewards(config, question.qid, actions)
    assert rewards == expected
    assert outputs[-1]["done"] and "reward_breakdown" in outputs[-1]["metadata"]
    env = skyrl_gym.make(ENV_ID, env_config=config, extras={"question_id": question.qid})
    env.init([])
    for action in actions:
        env.step(action)
    metrics = env.get_metrics()
    assert metrics["turns"] == 3 and metrics["format_errors"] == 1 and metrics["correct"] == 0.0


def test_bad_configs_name_the_field_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown searchqa env config keys \['max_turn'\]"):
        skyrl_gym.make(ENV_ID, env_config={"max_turn": 3}, extras={"question_id": "capital/fr"})
    with pytest.raises(ValueError, match="needs the row's question_id"):
        skyrl_gym.make(ENV_ID, env_config=CONFIG, extras={"reward_spec": {}})
    with pytest.raises(ValueError, match="not in the 'dev' split"):
        skyrl_gym.make(ENV_ID, env_config=CONFIG, extras={"question_id": "no-such-question"}).init([])
