"""SearchQA as a verifiers environment (the ``verifiers.v1`` API of verifiers 0.4.0).

Tested with verifiers 0.4.0. Install with ``pip install -e .[verifiers]``; ``import searchenv``
never imports verifiers.

::

    from searchenv.integrations.verifiers import load_environment

    env = load_environment(task="factbook", split="train", reward_preset="rezero-strict", max_turns=4)
    # a verifiers.v1 SingleAgentEnv: its taskset holds one task per question

In verifiers 0.4.0 an environment is a taskset of tasks, played by a harness (the model's chat
loop) that reaches the task's tools as MCP servers; rewards are the task's ``@vf.reward``
methods over the finished ``Trace``. Here:

- ``SearchQATaskset`` yields one ``SearchQATask`` per question of a split (opaque question id,
  the prompt in terms of the tools; never the gold answers).
- ``SearchQAToolset`` is the per-rollout tool server (``Task.toolsets``): ``search``, ``read``
  and ``answer`` step that rollout's own ``SearchQAEnv``, so the model reads the env's
  observations. Their descriptions are ``searchenv.tools_schema()``'s.
- The reward is the env's episode reward, computed by replaying every tool call of the
  trace's assistant messages, in order, through a fresh ``SearchQAEnv``
  (``score_tool_calls``). A malformed call (bad JSON, an unknown tool, a wrong argument)
  never reaches the tool server: the harness answers it. The replay hands it to the env's
  parser, which spends a turn on it as on any malformed action, and a ``@vf.stop`` hook ends
  the rollout when the replayed episode ends (an answer, or ``max_turns`` calls). A rollout
  that stops calling tools first is scored as truncated there, as the TRL bridge does.

The taskset is importable by verifiers' plugin loader under ``TASKSET_ID`` once this module is
imported (verifiers resolves a taskset id as a plain module name).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from searchenv.env import SearchQAEnv
from searchenv.integrations.trl import SYSTEM_PROMPT, TOOL_PROMPT_TEMPLATE
from searchenv.question_ids import opaque_question_id
from searchenv.questions import sample_question_ids, select_questions
from searchenv.tools import TOOL_ARGUMENTS, documented_tool

try:
    import verifiers.v1 as vf
except ImportError as error:  # the extra is optional: say how to get it
    raise ImportError(
        "searchenv.integrations.verifiers needs verifiers: pip install -e .[verifiers]"
    ) from error

TASKSET_ID = "searchqa_verifiers"
EPISODE_OVER = "The episode is over ({reason}); this call was ignored. Reply with your final answer."


class SearchQATaskData(vf.TaskData):
    """One question: its opaque id and split (what the env resets on), and the tool prompt."""

    question_id: str
    split: str


class SearchQATaskConfig(vf.TaskConfig):
    """The ``SearchQAEnv`` settings every rollout's env and every replay use."""

    task: str = "factbook"
    task_kwargs: dict[str, Any] = {}
    backend: str = "bm25s"
    reward_preset: str = "rezero-strict"
    max_turns: int = 8
    top_k: int = 3
    snippet_chars: int = 300
    read_chars: int | None = None
    tools: vf.ToolsetConfig = vf.ToolsetConfig()


class SearchQATasksetConfig(vf.TasksetConfig):
    """Which questions: a split, optionally filtered by hops and kinds and subsampled."""

    split: str = "train"
    hops: list[int] | None = None
    kinds: list[str] | None = None
    limit: int | None = None
    seed: int = 0
    task: SearchQATaskConfig = SearchQATaskConfig()


@functools.cache
def _env(config_json: str, split: str) -> SearchQAEnv:
    # One env per settings and split; corpus and index are shared process-wide anyway.
    config = SearchQATaskConfig.model_validate_json(config_json)
    return SearchQAEnv(
        task=config.task,
        split=split,
        backend=config.backend,
        reward_preset=config.reward_preset,
        reward_mode="dense",  # a rollout may stop early: its running total is then its reward
        max_turns=config.max_turns,
        top_k=config.top_k,
        snippet_chars=config.snippet_chars,
        read_chars=config.read_chars,
        task_kwargs=config.task_kwargs or None,
    )


def env_for(config: SearchQATaskConfig, split: str) -> SearchQAEnv:
    """The (dense-reward) ``SearchQAEnv`` of these settings, built once per process."""
    return _env(config.model_dump_json(exclude={"tools", "judges", "stops", "metrics", "rewards"}), split)


@dataclass(frozen=True)
class ReplayedEpisode:
    """What the env made of a rollout's tool calls."""

    reward: float
    done: bool
    turns: int
    breakdown: dict[str, float]


def score_tool_calls(env: SearchQAEnv, question_id: str, calls: Sequence[vf.ToolCall]) -> ReplayedEpisode:
    """Replay tool calls through ``env`` (reset on ``question_id``), stopping where the env ends.

    Every call counts, parsed by the env as it would parse it live: a malformed one spends a
    turn. The breakdown is the env's for the turns taken (its final one once done).
    """
    env.reset(options={"question_id": question_id})
    total, done, turns = 0.0, False, 0
    info: dict[str, Any] = {}
    for call in calls:
        _, reward, terminated, truncated, info = env.step({"name": call.name, "arguments": call.arguments})
        total, turns, done = total + reward, turns + 1, terminated or truncated
        if done:
            break
    breakdown = info.get("reward_breakdown") or {}
    return ReplayedEpisode(reward=total, done=done, turns=turns, breakdown=dict(breakdown))


def _tool_calls(trace: vf.Trace) -> list[vf.ToolCall]:
    return [call for message in trace.assistant_messages for call in message.tool_calls or []]


class SearchQAToolset(vf.Toolset[vf.ToolsetConfig]):
    """The rollout's tools over its own ``SearchQAEnv`` (one server, so one env, per rollout)."""

    TOOL_PREFIX = None  # the bare names of tools_schema(): search, read, answer

    def __init__(self, config: vf.ToolsetConfig) -> None:
        super().__init__(config)
        self.env: SearchQAEnv | None = None
        self.end_reason: str | None = None

    async def setup_task(self, task: SearchQATask) -> None:
        """Reset this rollout's env on the task's question."""
        self.env = env_for(task.config, task.data.split)
        self.env.reset(options={"question_id": task.data.question_id})
        self.end_reason = None

    @vf.tool
    @documented_tool("search")
    def search(self, query: str) -> str:
        return self._step("search", query)

    @vf.tool
    @documented_tool("read")
    def read(self, doc_id: str) -> str:
        return self._step("read", doc_id)

    @vf.tool
    @documented_tool("answer")
    def answer(self, answer: str) -> str:
        return self._step("answer", answer)

    def _step(self, name: str, argument: str) -> str:
        if self.env is None:
            raise RuntimeError("the SearchQA toolset has no task: setup_task() was not called")
        if self.end_reason is not None:
            return EPISODE_OVER.format(reason=self.end_reason)
        observation, _, terminated, truncated, _ = self.env.step(
            {"name": name, "arguments": {TOOL_ARGUMENTS[name]: argument}}
        )
        if terminated or truncated:
            self.end_reason = "answered" if terminated else "out of turns"
        return observation


class SearchQATask(vf.Task[SearchQATaskData, vf.State, SearchQATaskConfig]):
    """One question; its reward is the env's episode reward for the rollout's tool calls."""

    @classmethod
    def toolsets(cls, config: SearchQATaskConfig) -> list[vf.Toolset]:
        """One ``SearchQAToolset`` per rollout."""
        return [SearchQAToolset(config.tools)]

    def replay(self, trace: vf.Trace) -> ReplayedEpisode:
        """The env's view of the trace: its tool calls replayed through a fresh env."""
        return score_tool_calls(
            env_for(self.config, self.data.split), self.data.question_id, _tool_calls(trace)
        )

    @vf.stop
    async def episode_over(self, trace: vf.Trace) -> bool:
        """End the rollout when the env ends the episode (answer or turn budget)."""
        return self.replay(trace).done

    @vf.reward
    async def searchqa(self, trace: vf.Trace) -> float:
        """The env's episode reward under the task's reward preset."""
        return self.replay(trace).reward

    @vf.metric
    async def components(self, trace: vf.Trace) -> dict[str, float]:
        """The env's reward components and turns, recorded beside the reward (unweighted)."""
        replayed = self.replay(trace)
        return {
            **{f"searchqa_{k}": v for k, v in replayed.breakdown.items()},
            "searchqa_turns": replayed.turns,
        }


class SearchQATaskset(vf.Taskset[SearchQATask, SearchQATasksetConfig]):
    """The questions of one split of a SearchQA task, in ``sample_question_ids`` order."""

    def load(self) -> Iterator[SearchQATask]:
        """One task per question; the prompt states the tools' rules and the question."""
        config = self.config
        env = env_for(config.task, config.split)
        questions = select_questions(
            config.task.task,
            config.split,
            hops=config.hops,
            kinds=config.kinds,
            task_kwargs=config.task.task_kwargs or None,
        )
        by_id = {question.qid: question for question in questions}
        for index, qid in enumerate(sample_question_ids(questions, config.limit, config.seed)):
            prompt = TOOL_PROMPT_TEMPLATE.format(
                corpus=env.task.name, top_k=env.top_k, max_turns=env.max_turns, question=by_id[qid].question
            )
            data = SearchQATaskData(
                idx=index,
                id=opaque_question_id(qid),
                question_id=opaque_question_id(qid),
                split=config.split,
                prompt=prompt,
                system_prompt=SYSTEM_PROMPT,
            )
            yield SearchQATask(data, config.task)


def load_environment(
    task: str = "factbook",
    split: str = "train",
    *,
    reward_preset: str = "rezero-strict",
    max_turns: int = 8,
    top_k: int = 3,
    backend: str = "bm25s",
    hops: Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    task_kwargs: dict[str, Any] | None = None,
    **task_config: Any,
) -> vf.Env:
    """A verifiers ``SingleAgentEnv`` whose taskset is SearchQA's questions of ``split``.

    Args:
        task: A task name (``"factbook"``, ``"jsonl"`` with ``task_kwargs`` naming its files, ...).
        split: ``"train"``, ``"dev"`` or ``"test"``.
        reward_preset: The env's reward preset name.
        max_turns: Tool calls per episode.
        top_k: Passages per search.
        backend: The retrieval backend.
        hops: Keep only questions with these hop counts.
        kinds: Keep only questions of these kinds.
        limit: At most this many questions, drawn with ``seed``.
        seed: The seed of the subset.
        task_kwargs: Passed to the task loader.
        **task_config: Other ``SearchQATaskConfig`` fields (``snippet_chars``, ``read_chars``, ``tools``).

    Raises:
        ValueError: On a setting the env or verifiers' config validation rejects.
    """
    settings = SearchQATaskConfig(
        task=task,
        task_kwargs=dict(task_kwargs or {}),
        backend=backend,
        reward_preset=reward_preset,
        max_turns=max_turns,
        top_k=top_k,
        **task_config,
    )
    env_for(settings, split)  # bad settings fail here, with the env's message
    taskset = SearchQATasksetConfig(
        id=TASKSET_ID,
        split=split,
        hops=None if hops is None else [hops] if isinstance(hops, int) else list(hops),
        kinds=None if kinds is None else list(kinds),
        limit=limit,
        seed=seed,
        task=settings,
    )
    return vf.load_environment(vf.SingleAgentEnvConfig(taskset=taskset))


__all__ = ["SearchQATaskset"]  # what verifiers' plugin loader reads: exactly one Taskset

# verifiers imports a taskset by a plain module name; this module's dotted path is not one.
sys.modules.setdefault(TASKSET_ID, sys.modules[__name__])
