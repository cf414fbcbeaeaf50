"""The one episode loop: play any policy in SearchQA envs and collect finished episodes.

Evaluation, leaderboards, SFT demonstrations and RL rollouts (GRPO groups included) all go
through ``run_episodes``. A policy that records tokens (``LMPolicy``, ``DemonstrationPolicy``:
anything with ``pop_episode(slot)``) hands each finished episode's tokens to its result, so
trainers and evaluators read the same records.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

import searchenv  # noqa: F401  (registers the env ids)
from agents.policy import Policy
from searchenv.actions import action_to_text
from searchenv.episode import EpisodeRecord

if TYPE_CHECKING:
    from agents.lm.tokens import EpisodeTokens


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode: its record, reward, the text the agent saw and wrote, its tokens.

    ``group_id`` numbers the groups of episodes that share a question and reset seed (GRPO);
    with ``group_size=1`` it is the episode's index. ``tokens`` is the policy's token record
    when the policy keeps one, else None.
    """

    record: EpisodeRecord
    reward: float
    breakdown: dict[str, float]
    correct: bool
    transcript: tuple[tuple[str, str], ...]
    wall_time: float
    truncated: bool = False
    group_id: int = 0
    tokens: EpisodeTokens | None = None

    @property
    def question_id(self) -> str:
        """The id of the question the episode asked."""
        return self.record.question.qid

    @property
    def generated_tokens(self) -> int | None:
        """Tokens the policy wrote (actions and end-of-turn tokens); None for scripted policies."""
        return None if self.tokens is None else self.tokens.n_generated


@dataclass
class _Running:
    """Bookkeeping of the episode a slot is playing."""

    episode: int
    group: int
    started: float
    transcript: list[tuple[str, str]]
    rewards: list[float]


def run_episodes(
    policy: Policy,
    env_kwargs: Mapping[str, Any] | None = None,
    n_episodes: int | None = None,
    question_ids: Sequence[str] | None = None,
    *,
    num_envs: int = 8,
    seed: int = 0,
    group_size: int = 1,
    env_id: str = "SearchQA-v0",
    progress: bool = True,
) -> list[EpisodeResult]:
    """Play ``n_episodes`` episodes, or ``group_size`` episodes per id in ``question_ids``.

    Episodes come in groups of ``group_size`` consecutive episodes that share a question: group
    ``g`` is reset with seed ``seed + g`` and asks ``question_ids[g]`` when ids are given, else
    the question its first member draws. With ``group_size=1`` every episode is its own group,
    so episode ``j`` is reset with seed ``seed + j``, whatever the batch size.

    Up to ``num_envs`` episodes run side by side, and the policy acts on the running envs in one
    batched call (only running envs cost a generation). Results come back in the order the
    episodes were started. The policy's per-env state is keyed by ``info["slot"]``.

    Raises:
        ValueError: if neither or both of ``n_episodes`` and ``question_ids`` are given, or
            ``n_episodes`` is not a positive multiple of ``group_size``.
        RuntimeError: if the policy returns the wrong number of actions.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if (n_episodes is None) == (question_ids is None):
        raise ValueError("give exactly one of n_episodes and question_ids")
    if question_ids is not None:
        planned_questions: list[str | None] = list(question_ids)
    else:
        if int(n_episodes or 0) < 1 or int(n_episodes or 0) % group_size:
            raise ValueError(
                f"n_episodes={n_episodes} must be a positive multiple of group_size={group_size}"
            )
        planned_questions = [None] * (int(n_episodes or 0) // group_size)
    total = len(planned_questions) * group_size
    if total == 0:
        return []
    jobs = deque((episode, episode // group_size) for episode in range(total))
    num_envs = max(1, min(num_envs, total))
    envs = [gym.make(env_id, **dict(env_kwargs or {})) for _ in range(num_envs)]
    pop_episode = getattr(policy, "pop_episode", None)
    results: dict[int, EpisodeResult] = {}
    running: dict[int, _Running] = {}
    observations: dict[int, str] = {}
    infos: dict[int, dict[str, Any]] = {}
    bar = _progress_bar(total, progress, getattr(policy, "name", "policy"))

    def start(slot: int) -> None:
        episode, group = jobs.popleft()
        qid = planned_questions[group]
        options = {"question_id": qid} if qid is not None else None
        observation, info = envs[slot].reset(seed=seed + group, options=options)
        # Every later member of a group asks the question the first member drew.
        planned_questions[group] = str(info["question_id"])
        policy.reset([slot])
        info["slot"] = slot
        observations[slot], infos[slot] = observation, info
        running[slot] = _Running(episode, group, time.perf_counter(), [("", observation)], [])

    try:
        for slot in range(num_envs):
            start(slot)
        while running:
            slots = sorted(running)
            actions = policy.act([observations[s] for s in slots], [infos[s] for s in slots])
            if len(actions) != len(slots):
                raise RuntimeError(
                    f"{policy!r} returned {len(actions)} actions for {len(slots)} observations"
                )
            for slot, action in zip(slots, actions, strict=True):
                observation, reward, terminated, truncated, info = envs[slot].step(action)
                info["slot"] = slot
                episode = running[slot]
                episode.transcript.append((action_to_text(action), observation))
                episode.rewards.append(float(reward))
                observations[slot], infos[slot] = observation, info
                if not (terminated or truncated):
                    continue
                results[episode.episode] = EpisodeResult(
                    record=info["episode"],
                    reward=float(sum(episode.rewards)),
                    breakdown=dict(info["reward_breakdown"]),
                    correct=bool(info["correct"]),
                    transcript=tuple(episode.transcript),
                    wall_time=time.perf_counter() - episode.started,
                    truncated=bool(truncated),
                    group_id=episode.group,
                    tokens=pop_episode(slot) if pop_episode is not None else None,
                )
                del running[slot]
                if bar is not None:
                    bar.update(1)
                if jobs:
                    start(slot)
    finally:
        if bar is not None:
            bar.close()
        for env in envs:
            env.close()
    return [results[episode] for episode in range(total)]


def summarize(results: Sequence[EpisodeResult]) -> dict[str, float]:
    """Means over episodes: EM, F1, reward, searches and reads per episode, wall time."""
    from searchenv.rewards import correctness

    if not results:
        return {}
    return {
        "episodes": float(len(results)),
        "em": float(np.mean([r.correct for r in results])),
        "f1": float(np.mean([correctness(r.record, variant="f1") for r in results])),
        "reward": float(np.mean([r.reward for r in results])),
        "searches": float(np.mean([sum(t.tool == "search" for t in r.record.turns) for r in results])),
        "reads": float(np.mean([sum(t.tool == "read" for t in r.record.turns) for r in results])),
        "wall_time": float(np.sum([r.wall_time for r in results])),
    }


def _progress_bar(total: int, enabled: bool, description: str) -> Any:
    """A tqdm bar over episodes, or None when progress is off (logs, tests)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="ep", leave=False)
