"""A warm start for TRL (issue 17): oracle demonstrations as tool-calling chats for SFTTrainer.

Untrained, neither the tiny model nor SmolLM2 emits a tool call, so GRPO from them earns reward 0
(see tests/test_trl.py). ``export_demonstrations`` writes the episodes to fine-tune on first:
each call and result is checked here against the env itself.
"""

from __future__ import annotations

import json
from typing import Any

import datasets  # noqa: F401  (`make test` installs the trl extra: missing TRL fails, never skips)
import pytest
import torch
import trl  # noqa: F401

from searchenv.integrations.trl import (
    FINAL_REPLY,
    SYSTEM_PROMPT,
    SearchQAToolEnv,
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
