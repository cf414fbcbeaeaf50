"""SearchQA as a SkyRL text environment (``skyrl_gym.envs.base_text_env.BaseTextEnv``).

Tested with skyrl-gym 0.4.0. Install with ``pip install -e .[skyrl]``; ``import searchenv`` never
imports skyrl_gym, and importing this module registers the env under ``ENV_ID`` (``"searchqa"``).

::

    import skyrl_gym
    import searchenv.integrations.skyrl  # registers "searchqa"

    env = skyrl_gym.make(
        "searchqa",
        env_config={"task": "factbook", "split": "train", "reward_preset": "rezero-strict", "max_turns": 4},
        extras={"question_id": "capital/fr"},  # a dataset row's other columns; see SearchQASkyRLEnv
    )
    messages, metadata = env.init([{"role": "system", "content": "..."}])
    output = env.step("<search>capital of France</search>")  # or a <tool_call>{...}</tool_call> block

In a SkyRL training config the same keys go under ``environment.skyrl_gym.searchqa`` and each
dataset row names ``env_class: searchqa`` and carries ``question_id`` (and optionally ``split``),
at the top level or in ``extra_info``.

How it maps onto SkyRL: ``init(prompt)`` resets a ``SearchQAEnv`` on the row's question and
returns the row's prompt followed by the env's prompt as a user message (unless the row's prompt
already ends with it). ``step(text)`` passes
the model's whole response to ``SearchQAEnv.step``, so every action form the env parses works:
Search-R1 tags, or a ``<tool_call>`` JSON block of a tool-calling chat template (the tools are
``searchenv.tools_schema()``); a malformed action spends a turn and comes back as the env's
``<error>`` observation. The observation returns as one user message (none once done, as
SkyRL's own search env does); ``done`` is the env's
``terminated or truncated``; ``reward`` is the env's reward for the step (terminal by default,
so the episode's sum equals the plain env's reward); ``metadata`` carries the env's ``info``,
with ``reward_breakdown``, ``correct`` and the gold ``answers`` once the episode is over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from searchenv.env import SearchQAEnv

try:
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from skyrl_gym import register, registry
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput
except ImportError as error:  # the extra is optional: say how to get it
    raise ImportError("searchenv.integrations.skyrl needs skyrl-gym: pip install -e .[skyrl]") from error

ENV_ID = "searchqa"
# Every SearchQAEnv argument a SkyRL config may set; render_mode and judge do not fit a config file.
CONFIG_KEYS = (
    "task",
    "split",
    "backend",
    "reward_preset",
    "reward_mode",
    "max_turns",
    "top_k",
    "snippet_chars",
    "prompt",
    "read_chars",
    "hops",
    "kinds",
    "task_kwargs",
    "retriever_kwargs",
)


def _plain(value: Any) -> Any:
    """An OmegaConf node (SkyRL hands configs as DictConfig) as plain dicts and lists."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def env_kwargs_from_config(env_config: Any) -> dict[str, Any]:
    """The ``SearchQAEnv`` arguments of a SkyRL env config (a dict or an OmegaConf DictConfig).

    Raises:
        ValueError: On a key that is not a SearchQAEnv argument, naming the keys allowed.
    """
    config = _plain(env_config) or {}
    if not isinstance(config, Mapping):
        raise ValueError(
            f"the searchqa env config must be a mapping of SearchQAEnv arguments, not {config!r}"
        )
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown searchqa env config keys {unknown}; allowed: {list(CONFIG_KEYS)}")
    kwargs = {key: _plain(value) for key, value in config.items()}
    for key in ("hops", "kinds"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def _row_field(extras: Mapping[str, Any], name: str) -> Any:
    """A dataset column, at the top level of SkyRL's extras or inside its ``extra_info``."""
    if name in extras:
        return extras[name]
    extra_info = extras.get("extra_info")
    return extra_info.get(name) if isinstance(extra_info, Mapping) else None


class SearchQASkyRLEnv(BaseTextEnv):
    """One SearchQA episode per instance, as SkyRL's generator builds one env per trajectory.

    Args:
        env_config: ``SearchQAEnv`` arguments (``CONFIG_KEYS``): task, split, backend,
            reward_preset, reward_mode, max_turns, top_k, ... Index and corpus are shared by
            every env of the process (``searchenv.resources``), so one per trajectory is cheap.
        extras: The dataset row's other columns; ``question_id`` (required) and ``split``
            (optional, overrides the config's) are read at the top level or in ``extra_info``.

    Raises:
        ValueError: Without a question id, on an unknown config key, or on any argument
            ``SearchQAEnv`` rejects.
    """

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        extras = _plain(extras) or {}
        kwargs = env_kwargs_from_config(env_config)
        question_id = _row_field(extras, "question_id")
        if not isinstance(question_id, str) or not question_id:
            raise ValueError(
                "the searchqa env needs the row's question_id (a dataset column, top level or in "
                f"extra_info); got extras keys {sorted(extras)}"
            )
        split = _row_field(extras, "split")
        if split:
            kwargs["split"] = split
        self.env = SearchQAEnv(**kwargs)
        self.question_id = question_id
        self.max_turns = self.env.max_turns
        self.total_reward = 0.0
        self.info: dict[str, Any] = {}

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Reset on the row's question; return the row's prompt and the env's prompt after it."""
        observation, info = self.env.reset(options={"question_id": self.question_id})
        self.turns = 0
        self.total_reward = 0.0
        self.info = info
        messages = [dict(message) for message in _plain(prompt) or []]
        if not messages or messages[-1].get("content") != observation:
            messages.append({"role": "user", "content": observation})
        return messages, _metadata(info)

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """One turn: the model's response, parsed and executed by the env."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.turns += 1
        self.total_reward += reward
        self.info = info
        done = terminated or truncated
        return BaseTextEnvStepOutput(
            # SkyRL ends the trajectory on done: a last observation would never be read.
            observations=[] if done else [{"role": "user", "content": observation}],
            reward=reward,
            done=done,
            metadata=_metadata(info),
            postprocessed_action=None,
        )

    def get_metrics(self) -> dict[str, Any]:
        """Per-episode figures SkyRL averages over a batch: turns, format errors, reward components."""
        metrics: dict[str, Any] = {"turns": self.turns, "reward": self.total_reward}
        episode = self.info.get("episode")
        if episode is not None:
            metrics["format_errors"] = sum(not turn.valid for turn in episode.turns)
            metrics["correct"] = float(bool(self.info.get("correct")))
            metrics.update({f"reward/{k}": v for k, v in self.info.get("reward_breakdown", {}).items()})
        return metrics


def _metadata(info: Mapping[str, Any]) -> dict[str, Any]:
    """The env's info with its ``EpisodeRecord`` as plain data, so SkyRL can log it."""
    metadata = dict(info)
    episode = metadata.pop("episode", None)
    if episode is not None:
        metadata["turns"] = [dataclasses.asdict(turn) for turn in episode.turns]
    return metadata


if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=f"{__name__}:SearchQASkyRLEnv")
