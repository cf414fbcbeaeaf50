"""SearchQA as a tool environment for TRL's ``GRPOTrainer(environment_factory=...)``.

Tested with trl 1.16.0, transformers 5.24.0 and datasets 5.2.0 (torch 2.13.0, CPU). Install with
``pip install -e .[trl]``; nothing here imports TRL, ``datasets`` or torch until it is used.

::

    from trl import GRPOConfig, GRPOTrainer
    from searchenv.integrations.trl import export_dataset, make_env_factory, searchqa_reward

    # first a warm start: SFTTrainer(train_dataset=export_demonstrations("train", max_turns=4, ...))

    trainer = GRPOTrainer(
        model=model,                        # its tokenizer needs a tool-calling chat template
        processing_class=tokenizer,         # (use_tool_chat_template for ChatML tokenizers)
        args=GRPOConfig(max_completion_length=512, ...),
        environment_factory=make_env_factory(task="factbook", max_turns=4, reward_preset="rezero-strict"),
        reward_funcs=searchqa_reward,
        train_dataset=export_dataset("train", hops=1, limit=512),
    )

How TRL drives it, one ``SearchQAToolEnv`` per rollout:

1. ``reset(**row)`` gets every column of the dataset row. It resets a real ``SearchQAEnv`` on
   exactly ``row["question_id"]`` (of ``row["split"]``), so the rollouts of a GRPO group ask
   one question, and returns the prompt, which TRL appends to the row's (empty) user message.
2. Each tool call the model makes (``search``, ``read``, ``answer``; TRL builds their schema
   from the signatures and docstrings) is one ``env.step`` with a structured action and
   returns the env's observation text. Bad argument values are the env's business: they spend
   the turn and come back as its ``<error>`` text, as for any agent. A missing or unknown
   argument name is a ``TypeError`` before the env is reached; TRL returns its text as the result.
3. ``searchqa_reward`` (pass it as ``reward_funcs``) returns each rollout's env reward under
   the preset chosen. The class has no ``get_reward`` on purpose: TRL adds one as an extra,
   unweighted reward column, which would count the env reward twice beside ``reward_funcs``.

When episodes end: ``answer`` terminates the episode; ``max_turns`` tool calls without an
answer truncate it (the env's own rule; the last observation says so). TRL has no "episode
over" signal and keeps calling tools up to ``max_tool_calling_iterations``: calls after the end
change nothing and return a short "episode is over" text. A rollout that stops calling tools
before either (it replied in plain text, or hit TRL's iteration or length limits) is scored
as if truncated there: the env's reward for the turns it took, which is what the env would pay
had ``max_turns`` been reached at that point. The wrapped env runs with ``reward_mode="dense"``
so that this running total is always known; summed, dense rewards equal the terminal reward.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from searchenv.env import SearchQAEnv
from searchenv.observations import parse_question
from searchenv.questions import sample_question_ids, select_questions
from searchenv.rewards import RewardPreset
from searchenv.tools import documented_tool
from tasks.records import Task

if TYPE_CHECKING:
    from datasets import Dataset

INSTALL_HINT = "install it with `pip install -e .[trl]`"

# Always sent: without a system message TRL's Qwen2.5 tool template injects its own identity line.
SYSTEM_PROMPT = (
    "You are a research assistant with a search engine over a local corpus. Find evidence with "
    "the tools before answering, then call answer exactly once."
)
# The env's own prompt teaches the <search>...</search> tag syntax; a tool-calling model is told
# the same rules in terms of its tools. The last line is the env's question, verbatim.
TOOL_PROMPT_TEMPLATE = """Answer the question by searching a local index of {corpus} passages.
Call search(query) for the top {top_k} passages with their doc ids, read(doc_id) for the full text of \
one passage, and answer(answer) with a short final answer, which ends the episode.
Each tool call spends one of your {max_turns} turns.
Question: {question}"""
OUT_OF_TURNS = "The turn budget is spent: the episode is over without an answer."
EPISODE_OVER = "The episode is over ({reason}); this call was ignored. Reply without calling a tool."
# The demonstrations' last assistant turn, after the answer tool's result: a plain reply ends the rollout.
FINAL_REPLY = "The answer is {answer}."
TOOL_ARGUMENT = {"search": "query", "read": "doc_id", "answer": "answer"}
_ACTION_RE = re.compile(r"<(search|read|answer)>(.*?)</\1>", re.DOTALL)


class SearchQAToolEnv:
    """One SearchQA episode at a time, exposed as the ``search``, ``read`` and ``answer`` tools.

    TRL treats every public method but ``reset`` (and ``get_reward``) as a tool, so the
    episode's state is read through properties: ``reward``, ``done``, ``question_id``,
    ``actions``, ``info``, ``correct`` and ``reward_breakdown``.

    Args:
        task: A task name (``"factbook"``, ``"jsonl"``, ``"synthetic"``) or a ``tasks.Task``.
        split: The split used when a dataset row has no ``split`` column.
        backend: The retrieval backend (``"bm25s"``, ``"pyserini"`` or ``"rank_bm25"``).
        reward_preset: The reward preset name (e.g. ``"rezero-strict"``, ``"em"``) or a ``RewardPreset``.
        max_turns: Tool calls per episode before it is truncated.
        top_k: Passages per search.
        snippet_chars: Characters of each search snippet.
        task_kwargs: Passed to the task loader (e.g. the files of a ``"jsonl"`` task).
        **env_kwargs: Any other ``SearchQAEnv`` argument (``judge``, ``retriever_kwargs``);
            ``reward_mode`` is not one of them, since the adapter needs the dense mode.

    Raises:
        ValueError: On an argument ``SearchQAEnv`` rejects, or on ``reward_mode``.
    """

    def __init__(
        self,
        task: str | Task = "factbook",
        split: str = "train",
        *,
        backend: str = "bm25s",
        reward_preset: str | RewardPreset = "rezero-strict",
        max_turns: int = 8,
        top_k: int = 3,
        snippet_chars: int = 300,
        task_kwargs: Mapping[str, Any] | None = None,
        **env_kwargs: Any,
    ) -> None:
        if "reward_mode" in env_kwargs:
            raise ValueError(
                "SearchQAToolEnv sets reward_mode itself ('dense', whose sum is the terminal reward); "
                "drop the reward_mode argument"
            )
        self._env_kwargs: dict[str, Any] = dict(
            task=task,
            backend=backend,
            reward_preset=reward_preset,
            reward_mode="dense",
            max_turns=max_turns,
            top_k=top_k,
            snippet_chars=snippet_chars,
            task_kwargs=task_kwargs,
            **env_kwargs,
        )
        self.default_split = split
        self._envs: dict[str, SearchQAEnv] = {}
        # Built now so that bad arguments fail when TRL probes the factory, not mid-training.
        self._env = self._env_for(split)
        self._started = False
        self._end_reason: str | None = None
        self._reward = 0.0
        self._actions: list[dict[str, Any]] = []
        self._info: dict[str, Any] = {}
        self._question_id: str | None = None

    def _env_for(self, split: str) -> SearchQAEnv:
        # One env per split, so a single factory serves both train_dataset and eval_dataset; the
        # corpus and index are shared between them (searchenv.resources).
        if split not in self._envs:
            self._envs[split] = SearchQAEnv(split=split, **self._env_kwargs)
        return self._envs[split]

    def reset(self, **row: Any) -> str:
        """Start the episode of one dataset row and return its prompt.

        Args:
            **row: Every column of the row; ``question_id`` is required, ``split`` is optional
                (default: the constructor's), the rest is ignored.

        Returns:
            The instructions in terms of the tools, ending with the env's ``Question: ...`` line.

        Raises:
            ValueError: If ``question_id`` is missing or not in the split. The env never draws
                a question itself: the rollouts of a GRPO group must share one.
        """
        question_id = row.get("question_id")
        if not isinstance(question_id, str) or not question_id:
            raise ValueError(
                f"reset() needs a 'question_id' column (export_dataset writes one); got columns {sorted(row)}"
            )
        split = row.get("split") or self.default_split
        self._env = self._env_for(split)
        observation, info = self._env.reset(options={"question_id": question_id})
        self._started = True
        self._end_reason = None
        self._reward = 0.0
        self._actions = []
        self._info = info
        self._question_id = question_id
        return TOOL_PROMPT_TEMPLATE.format(
            corpus=self._env.task.name,
            top_k=self._env.top_k,
            max_turns=self._env.max_turns,
            question=parse_question(observation),
        )

    # The docstring TRL turns into the tool's schema comes from searchenv.tools, the one owner.
    @documented_tool("search")
    def search(self, query: str) -> str:  # noqa: D102
        return self._step({"tool": "search", "query": query})

    # The docstring TRL turns into the tool's schema comes from searchenv.tools, the one owner.
    @documented_tool("read")
    def read(self, doc_id: str) -> str:  # noqa: D102
        return self._step({"tool": "read", "doc_id": doc_id})

    # The docstring TRL turns into the tool's schema comes from searchenv.tools, the one owner.
    @documented_tool("answer")
    def answer(self, answer: str) -> str:  # noqa: D102
        return self._step({"tool": "answer", "answer": answer})

    def _step(self, action: dict[str, Any]) -> str:
        if not self._started:
            raise RuntimeError("call reset() before calling a tool")
        if self._end_reason is not None:
            return EPISODE_OVER.format(reason=self._end_reason)
        self._actions.append(action)
        observation, reward, terminated, truncated, info = self._env.step(action)
        self._reward += reward
        self._info = info
        if terminated:
            self._end_reason = "answered"
        elif truncated:
            self._end_reason = "out of turns"
            observation = f"{observation}\n{OUT_OF_TURNS}"
        return observation

    @property
    def reward(self) -> float:
        """The env's reward for the episode so far (its terminal reward once it is done)."""
        if not self._started:
            raise RuntimeError("no episode yet: call reset() first")
        return self._reward

    @property
    def done(self) -> bool:
        """Whether the env ended the episode (an answer, or ``max_turns`` tool calls)."""
        return self._end_reason is not None

    @property
    def question_id(self) -> str | None:
        """The row's id of the question being asked (None before the first reset).

        The env's ``info["question_id"]`` is the opaque id; this is the one the dataset row gave.
        """
        return self._question_id

    @property
    def actions(self) -> tuple[dict[str, Any], ...]:
        """The structured actions the env stepped this episode, in order (ignored calls excluded)."""
        return tuple(self._actions)

    @property
    def info(self) -> dict[str, Any]:
        """The env's ``info`` of the last reset or step (gold answers appear only once done)."""
        return dict(self._info)

    @property
    def correct(self) -> bool | None:
        """Normalized exact match of the answer once the episode is done, else None."""
        return self._info.get("correct")

    @property
    def reward_breakdown(self) -> dict[str, float] | None:
        """Every reward component once the episode is done, else None."""
        return self._info.get("reward_breakdown")


def make_env_factory(task: str | Task = "factbook", **kwargs: Any) -> Callable[[], SearchQAToolEnv]:
    """A zero-argument factory for ``GRPOTrainer(environment_factory=...)``.

    One env is built here, so bad arguments fail at once and the index is loaded before TRL
    starts.

    Args:
        task: A task name or a ``tasks.Task``.
        **kwargs: The other ``SearchQAToolEnv`` arguments (``split``, ``reward_preset``,
            ``max_turns``, ``top_k``, ``backend``, ...).

    Returns:
        A callable that builds a fresh ``SearchQAToolEnv`` with these arguments.
    """
    SearchQAToolEnv(task, **kwargs)
    return functools.partial(SearchQAToolEnv, task, **kwargs)


def searchqa_reward(environments: Sequence[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """TRL reward function: each rollout's SearchQA reward, read from its environment.

    Args:
        environments: The per-rollout environments TRL passes when ``environment_factory`` is set.
        **kwargs: TRL's other reward arguments (prompts, completions, dataset columns), unused.

    Returns:
        The env reward of each ``SearchQAToolEnv`` rollout; None (ignored by TRL) for rollouts
        of other environments in a multi-environment run.

    Raises:
        ValueError: Without ``environments``, i.e. when the trainer has no ``environment_factory``.
    """
    if environments is None:
        raise ValueError(
            "searchqa_reward reads the reward from the environments: pass "
            "environment_factory=make_env_factory(...) to GRPOTrainer"
        )
    return [env.reward if isinstance(env, SearchQAToolEnv) else None for env in environments]


def export_dataset(
    split: str = "train",
    *,
    task: str | Task = "factbook",
    hops: int | Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    system_prompt: str = SYSTEM_PROMPT,
    task_kwargs: Mapping[str, Any] | None = None,
) -> Dataset:
    """The questions of a split as a ``datasets.Dataset`` for ``GRPOTrainer(train_dataset=...)``.

    Columns: ``prompt`` (a system message and an empty user message, which TRL completes with
    the prompt ``reset`` returns), ``question_id`` and ``split`` (what ``reset`` reads),
    ``question``, ``kind`` and ``hops`` (for inspection and per-kind metrics). Gold answers
    are left out: TRL hands every column to the reward functions, and the env owns correctness.

    Args:
        split: ``"train"``, ``"dev"`` or ``"test"``.
        task: A task name or a ``tasks.Task``; the env factory must use the same task.
        hops: Keep only questions with these hop counts.
        kinds: Keep only questions of these kinds.
        limit: At most this many questions, drawn with ``seed`` (``sample_question_ids``).
        seed: The seed of the subset.
        system_prompt: The system message of every prompt.
        task_kwargs: Passed to the task loader when ``task`` is a name.

    Returns:
        One row per question, in split order.

    Raises:
        ImportError: Without the ``datasets`` package.
        ValueError: If no question is left after filtering, or ``limit`` < 1.
    """
    datasets = _require("datasets")
    questions = select_questions(task, split, hops=hops, kinds=kinds, task_kwargs=task_kwargs)
    by_id = {q.qid: q for q in questions}
    rows = [
        {
            "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": ""}],
            "question_id": qid,
            "split": split,
            "question": by_id[qid].question,
            "kind": by_id[qid].kind,
            "hops": by_id[qid].hops,
        }
        for qid in sample_question_ids(questions, limit, seed)
    ]
    return datasets.Dataset.from_list(rows)


def tool_schemas() -> list[dict[str, Any]]:
    """The JSON schemas of the three tools, in the order TRL lists an env's methods (by name).

    These are what ``GRPOTrainer(environment_factory=...)`` renders into its prompts; the
    ``tools`` column of ``export_demonstrations`` holds the same, so SFT and GRPO prompts agree.
    """
    from transformers.utils import get_json_schema

    return [get_json_schema(getattr(SearchQAToolEnv, name)) for name in sorted(TOOL_ARGUMENT)]


def export_demonstrations(
    split: str = "train",
    *,
    task: str | Task = "factbook",
    hops: int | Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    system_prompt: str = SYSTEM_PROMPT,
    task_kwargs: Mapping[str, Any] | None = None,
    **env_kwargs: Any,
) -> Dataset:
    """Oracle demonstrations as tool-calling chats: a warm start for TRL's ``SFTTrainer``.

    Each row plays one question with ``agents.scripted.OraclePolicy`` through a real
    ``SearchQAToolEnv`` and writes the episode as chat messages: the system message and the
    prompt ``reset`` returns (exactly what ``GRPOTrainer`` shows a rollout), then per tool call
    an assistant message with ``tool_calls`` (``{"type": "function", "function": {"name",
    "arguments"}}``, arguments named as the tools take them) and a ``tool`` message holding the
    env's observation, and last a plain assistant reply (``FINAL_REPLY``), which teaches the
    model to stop once it has answered. The oracle's searches are question words, then the gold
    passage's title words (see its docstring): queries a model could write.

    Columns: ``messages`` (a list of JSON objects, since tool arguments differ in their keys),
    ``tools`` (``tool_schemas()`` as a JSON string, which ``SFTTrainer`` renders into the
    prompt as GRPO does), ``question_id``, ``split``, ``question``, ``reward`` and ``correct``.

    Args:
        split: ``"train"``, ``"dev"`` or ``"test"``.
        task: A task name or a ``tasks.Task``.
        hops: Keep only questions with these hop counts.
        kinds: Keep only questions of these kinds.
        limit: At most this many questions, drawn with ``seed`` (as ``export_dataset`` draws them).
        seed: The seed of the subset.
        system_prompt: The system message of every chat.
        task_kwargs: Passed to the task loader when ``task`` is a name.
        **env_kwargs: ``SearchQAToolEnv`` arguments (``max_turns``, ``top_k``, ``reward_preset``,
            ...): use those the GRPO env factory uses, so that observations look the same.

    Returns:
        One row per question, in the order ``export_dataset`` gives them.

    Raises:
        ImportError: Without the ``datasets`` package.
        ValueError: If no question is left after filtering, or ``limit`` < 1.
    """
    datasets = _require("datasets")
    from agents.scripted import OraclePolicy

    env = SearchQAToolEnv(task, split, task_kwargs=task_kwargs, **env_kwargs)
    oracle = OraclePolicy(env._env.task)
    questions = select_questions(task, split, hops=hops, kinds=kinds, task_kwargs=task_kwargs)
    tools = json.dumps(tool_schemas())
    rows = []
    for question_id in sample_question_ids(questions, limit, seed):
        observation = env.reset(question_id=question_id, split=split)
        oracle.reset()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": observation},
        ]
        answer = ""
        while not env.done:
            action = oracle.act([observation], [env.info])[0]
            match = _ACTION_RE.search(str(action))
            if match is None:
                raise AssertionError(f"the oracle wrote no tool call: {action!r}")
            name, argument = match.group(1), match.group(2)
            answer = argument if name == "answer" else answer
            call = {
                "type": "function",
                "function": {"name": name, "arguments": {TOOL_ARGUMENT[name]: argument}},
            }
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            observation = getattr(env, name)(argument)
            messages.append({"role": "tool", "name": name, "content": observation})
        messages.append({"role": "assistant", "content": FINAL_REPLY.format(answer=answer)})
        rows.append(
            {
                "messages": messages,
                "tools": tools,
                "question_id": question_id,
                "split": split,
                "question": parse_question(messages[1]["content"]),
                "reward": env.reward,
                "correct": bool(env.correct),
            }
        )
    features = datasets.Features(
        {
            "messages": datasets.List(datasets.Json()),
            "tools": datasets.Value("string"),
            "question_id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "question": datasets.Value("string"),
            "reward": datasets.Value("float64"),
            "correct": datasets.Value("bool"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def use_tool_chat_template(tokenizer: Any) -> Any:
    """Give a ChatML tokenizer (the tiny model's, SmolLM2's) TRL's Qwen2.5 tool-calling template.

    TRL renders tool schemas and parses ``<tool_call>{...}</tool_call>`` only for chat
    templates it knows, by exact string match; Qwen2.5's uses the same ``<|im_start|>`` and
    ``<|im_end|>`` tokens as these tokenizers.

    Args:
        tokenizer: A Hugging Face tokenizer whose vocabulary has ``<|im_start|>`` and ``<|im_end|>``.

    Returns:
        The same tokenizer, its ``chat_template`` replaced.

    Raises:
        ImportError: Without TRL.
        ValueError: If the tokenizer lacks the ChatML tokens.
    """
    _require("trl")
    from trl.chat_template_utils import qwen2_5_chat_template

    missing = [token for token in ("<|im_start|>", "<|im_end|>") if token not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"the tokenizer lacks the ChatML tokens {missing}; the Qwen2.5 template needs them")
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"the TRL bridge needs {module!r}: {INSTALL_HINT}") from error
