"""The verifiers bridge through the real verifiers package (0.4.0's v1 API), on scripted assistant messages.

No model server: the scripted assistant turns call the tools through a real MCP server holding
the rollout's ``SearchQAToolset`` (as verifiers' harnesses reach it), a call MCP rejects comes
back as an error tool message (as a harness reports it), and the task's own stop hook, reward
and metrics run on a real ``vf.Trace`` of those messages.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import verifiers.v1 as vf  # `make test` installs the verifiers extra: a missing package fails, never skips
from mcp.server.mcpserver import MCPServer

from searchenv.env import SearchQAEnv
from searchenv.integrations.verifiers import SearchQATask, SearchQATaskset, load_environment
from searchenv.observations import parse_hits

MAX_TURNS = 3
PLAIN: dict[str, Any] = {"split": "dev", "max_turns": MAX_TURNS, "reward_preset": "rezero-strict"}


@pytest.fixture(scope="module")
def environment() -> vf.Env:
    return load_environment(task="factbook", split="dev", max_turns=MAX_TURNS, hops=1, limit=3, seed=1)


@pytest.fixture(scope="module")
def tasks(environment: vf.Env) -> list[SearchQATask]:
    return list(environment.taskset)


@pytest.fixture(scope="module")
def plain() -> SearchQAEnv:
    return SearchQAEnv(**PLAIN)


def _plain_reward(plain: SearchQAEnv, question_id: str, calls: list[dict[str, str]]) -> tuple[float, int]:
    plain.reset(options={"question_id": question_id})
    total, turns = 0.0, 0
    for call in calls:
        _, reward, terminated, truncated, _ = plain.step(call)
        total, turns = total + reward, turns + 1
        if terminated or truncated:
            break
    return total, turns


async def _rollout(task: SearchQATask, calls: list[dict[str, str]]) -> tuple[vf.Trace, list[str]]:
    """Play the scripted calls, one assistant turn each, until the task's stop hook fires."""
    toolset = task.toolsets(task.config)[0]
    await toolset.setup_task(task)
    server = MCPServer("searchqa")
    toolset.register(server)
    trace = vf.Trace(
        task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        agent=vf.AgentInfo(config=vf.AgentConfig()),
    )
    trace.nodes.append(vf.MessageNode(message=vf.UserMessage(content=task.data.prompt)))
    results = []
    for index, call in enumerate(calls):
        tool_call = vf.ToolCall(id=f"call-{index}", name=call["name"], arguments=call["arguments"])
        assistant = vf.AssistantMessage(content="", tool_calls=[tool_call])
        trace.nodes.append(vf.MessageNode(parent=len(trace.nodes) - 1, message=assistant, sampled=True))
        try:
            result = await server.call_tool(call["name"], json.loads(call["arguments"]))
            text = result.content[0].text
        except Exception as error:  # what a harness sends back for a call the server rejects
            text = f"Error: {error}"
        results.append(text)
        message = vf.ToolMessage(tool_call_id=tool_call.id, content=text, name=call["name"])
        trace.nodes.append(vf.MessageNode(parent=len(trace.nodes) - 1, message=message))
        if await task.episode_over(trace):
            break
    await task.score(trace)
    return trace, results


def _call(name: str, **arguments: str) -> dict[str, str]:
    return {"name": name, "arguments": json.dumps(arguments)}


def test_load_environment_returns_a_verifiers_env_over_the_questions(
    environment: vf.Env, tasks: list[SearchQATask]
) -> None:
    assert isinstance(environment, vf.SingleAgentEnv) and isinstance(environment.taskset, SearchQATaskset)
    assert len(tasks) == 3 and len({task.key for task in tasks}) == 3
    for task in tasks:
        wire = task.data.model_dump_json()
        assert "Question:" in (task.data.prompt or "") and task.data.question_id.startswith("q-")
        assert "answers" not in wire
    assert [spec.__name__ for spec in tasks[0].hooks("reward")] == ["searchqa"]


def test_a_scripted_rollout_earns_the_plain_env_reward(tasks: list[SearchQATask], plain: SearchQAEnv) -> None:
    task = tasks[0]
    plain.reset(options={"question_id": task.data.question_id})
    question = plain._question
    assert question is not None
    doc_id = parse_hits(plain.step(f"<search>{question.question}</search>")[0])[0].doc_id
    calls = [
        _call("search", query=question.question),
        _call("read", doc_id=doc_id),
        _call("answer", answer=question.answers[0]),
    ]
    trace, results = asyncio.run(_rollout(task, calls))
    expected, turns = _plain_reward(plain, task.data.question_id, calls)
    assert trace.reward == pytest.approx(expected) and expected > 0
    assert trace.metrics["searchqa_turns"] == turns == 3 and trace.metrics["searchqa_correctness"] == 1.0
    assert results[0].startswith("<information>") and doc_id in results[1]


def test_a_malformed_call_costs_a_turn_as_in_the_env(tasks: list[SearchQATask], plain: SearchQAEnv) -> None:
    task = tasks[1]
    calls = [
        {"name": "search", "arguments": '{"q": "wrong argument name"}'},
        _call("search", query="highest point"),
        _call("search", query="capital city"),
        _call("answer", answer="too late: the budget is spent"),
    ]
    trace, results = asyncio.run(_rollout(task, calls))
    assert results[0].startswith("Error:"), "MCP rejected the call: the toolset's env never saw it"
    assert len(results) == MAX_TURNS, "the stop hook ended the rollout at the env's turn budget"
    expected, turns = _plain_reward(plain, task.data.question_id, calls)
    assert turns == MAX_TURNS and trace.reward == pytest.approx(expected)
    assert trace.metrics["searchqa_format"] == pytest.approx(0.0), "no answer: no format reward"


def test_a_rollout_that_stops_calling_tools_is_scored_as_truncated_there(
    tasks: list[SearchQATask], plain: SearchQAEnv
) -> None:
    task = tasks[2]
    calls = [_call("search", query="capital")]
    trace, _ = asyncio.run(_rollout(task, calls))
    dense = SearchQAEnv(**PLAIN, reward_mode="dense")
    expected, _ = _plain_reward(dense, task.data.question_id, calls)
    assert trace.reward == pytest.approx(expected)
    assert not asyncio.run(task.episode_over(trace))


def test_bad_settings_fail_at_load_with_the_env_message() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        load_environment(task="factbook", split="dev", max_turns=0)
