"""OpenAI-style tools in the env: ``searchenv.tools_schema()`` and tool calls as ``env.step`` actions."""

from __future__ import annotations

import json
from typing import Any

import pytest

import searchenv
from searchenv.actions import parse_action, parse_text_action
from searchenv.env import SearchQAEnv
from searchenv.observations import is_error, parse_hits


@pytest.fixture(scope="module")
def env() -> SearchQAEnv:
    return SearchQAEnv(split="dev", max_turns=4)


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": json.dumps(arguments)}


def test_the_schema_declares_each_tool_with_its_one_required_string_argument() -> None:
    schema = searchenv.tools_schema()
    by_name = {tool["function"]["name"]: tool for tool in schema}
    assert list(by_name) == ["search", "read", "answer"]
    for name, argument in (("search", "query"), ("read", "doc_id"), ("answer", "answer")):
        tool = by_name[name]
        assert tool["type"] == "function" and tool["function"]["description"]
        parameters = tool["function"]["parameters"]
        assert parameters["required"] == [argument]
        assert parameters["properties"][argument]["type"] == "string"
    schema[0]["function"]["name"] = "changed"
    assert searchenv.tools_schema()[0]["function"]["name"] == "search", "callers get a copy"


def test_the_trl_adapter_renders_the_same_descriptions() -> None:
    from searchenv.integrations.trl import tool_schemas

    ours = {tool["function"]["name"]: tool["function"] for tool in searchenv.tools_schema()}
    for tool in tool_schemas():
        function = {key: value for key, value in tool["function"].items() if key != "return"}
        assert function == ours[function["name"]]


@pytest.mark.parametrize(
    "call",
    [
        {"name": "search", "arguments": '{"query": "capital of France"}'},
        {"name": "search", "arguments": {"query": "capital of France"}},
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "search", "arguments": '{"query": "capital of France"}'},
        },
        "<think>first search</think><tool_call>\n"
        '{"name": "search", "arguments": {"query": "capital of France"}}\n</tool_call>',
    ],
    ids=["json-string", "dict", "openai-message-form", "hermes-text"],
)
def test_every_form_of_a_call_parses_like_the_text_action(call: Any) -> None:
    assert parse_action(call) == parse_text_action("<search>capital of France</search>")


def test_a_tool_call_episode_pays_what_the_same_text_episode_pays(env: SearchQAEnv) -> None:
    question = env.questions[0]
    env.reset(options={"question_id": question.qid})
    observation, *_ = env.step(_call("search", query=question.question))
    doc_id = parse_hits(observation)[0].doc_id
    calls = [
        _call("search", query=question.question),
        _call("read", doc_id=doc_id),
        _call("answer", answer=question.answers[0]),
    ]
    texts = [
        f"<search>{question.question}</search>",
        f"<read>{doc_id}</read>",
        f"<answer>{question.answers[0]}</answer>",
    ]
    outcomes = []
    for actions in (calls, texts):
        env.reset(options={"question_id": question.qid})
        steps = [env.step(action) for action in actions]
        outcomes.append([(obs, reward, term, trunc) for obs, reward, term, trunc, _ in steps])
        breakdown = steps[-1][4]["reward_breakdown"]
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][-1][1] > 0 and outcomes[0][-1][2] and breakdown["correctness"] == 1.0


@pytest.mark.parametrize(
    ("call", "explains"),
    [
        ({"name": "search", "arguments": '{"query": "France'}, "not valid JSON"),
        ({"name": "search", "arguments": '{"q": "France"}'}, 'needs a "query" argument'),
        ({"name": "search", "arguments": '{"query": ""}'}, "is empty"),
        ({"name": "search", "arguments": '{"query": 3}'}, "must be a string"),
        ({"name": "search", "arguments": '["France"]'}, "must be an object"),
        ({"name": "fly", "arguments": "{}"}, "Unknown tool 'fly'"),
        ({"function": "search"}, "Unknown tool None"),
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        (_call("read", doc_id="no/such/doc"), "no/such/doc"),
    ],
)
def test_a_malformed_call_spends_a_turn_with_the_errors_of_malformed_text(
    env: SearchQAEnv, call: Any, explains: str
) -> None:
    env.reset(options={"question_id": env.questions[1].qid})
    observation, reward, terminated, truncated, info = env.step(call)
    assert is_error(observation) and explains in observation
    assert "Call exactly one tool" in observation or "no/such/doc" in observation
    assert info["turn"] == 1 and info["turns_left"] == env.max_turns - 1
    assert (reward, terminated, truncated) == (0.0, False, False)
    env.reset(options={"question_id": env.questions[1].qid})
    bad_text, *_ = env.step("no tags at all")
    # Both come back in the env's one error layout: the reason, then the turns left.
    suffix = f" Turns left: {env.max_turns - 1}.</error>"
    assert observation.endswith(suffix) and bad_text.endswith(suffix)


def test_a_malformed_call_costs_format_reward_as_malformed_text_does(env: SearchQAEnv) -> None:
    question = env.questions[2]
    rewards = []
    for bad in ({"name": "search", "arguments": "{oops"}, "<search></search"):
        env.reset(options={"question_id": question.qid})
        env.step(bad)
        *_, info = env.step(_call("answer", answer=question.answers[0]))
        rewards.append(info["reward_breakdown"])
    assert rewards[0] == rewards[1]
    assert rewards[0]["format"] == 0.5


def test_parallel_search_calls_in_one_text_count_as_several_searches() -> None:
    text = "".join(
        f'<tool_call>{{"name": "search", "arguments": {{"query": "{query}"}}}}</tool_call>'
        for query in ("a", "b")
    )
    parsed = parse_text_action(text)
    assert (parsed.tool, parsed.argument, parsed.search_tags) == ("search", "a", 2)


def test_the_first_complete_action_wins_between_tags_and_tool_calls() -> None:
    call = '<tool_call>{"name": "answer", "arguments": {"answer": "Paris"}}</tool_call>'
    assert parse_text_action(f"<search>x</search>{call}").tool == "search"
    assert parse_text_action(f"{call}<search>x</search>").tool == "answer"
