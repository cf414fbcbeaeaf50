"""Play a policy in SearchQA envs and collect finished episodes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import searchenv  # noqa: F401  (registers the env ids)
from agents.policy import Policy
from searchenv.actions import action_to_text
from searchenv.episode import EpisodeRecord


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode: its record, reward, and the text the agent saw and wrote."""

    record: EpisodeRecord
    reward: float
    breakdown: dict[str, float]
    correct: bool
    transcript: tuple[tuple[str, str], ...]
    wall_time: float
    truncated: bool = False

    @property
    def question_id(self) -> str:
        return self.record.question.qid


def run_episodes(
    policy: Policy,
    env_kwargs: Mapping[str, Any] | None = None,
    n_episodes: int | None = None,
    question_ids: Sequence[str] | None = None,
    *,
    num_envs: int = 8,
    seed: int = 0,
    env_id: str = "SearchQA-v0",
    progress: bool = True,
) -> list[EpisodeResult]:
    """Run ``policy`` for ``n_episodes`` random questions, or once per id in ``question_ids``.

    Up to ``num_envs`` episodes run side by side and the policy acts on all running envs in
    one batched call. Results come back in the order the episodes were started, so a list of
    question ids maps one to one onto the results. Episode ``j`` is reset with seed
    ``seed + j``, which makes runs reproducible whatever the batch size.
    """
    if (n_episodes is None) == (question_ids is None):
        raise ValueError("give exactly one of n_episodes and question_ids")
    planned: list[str | None] = list(question_ids) if question_ids is not None else [None] * int(n_episodes)
    if not planned:
        return []
    num_envs = max(1, min(num_envs, len(planned)))
    envs = [gym.make(env_id, **dict(env_kwargs or {})) for _ in range(num_envs)]
    queue = deque(enumerate(planned))
    results: dict[int, EpisodeResult] = {}
    # Per slot while an episode runs: episode number, start time, transcript, rewards so far.
    running: dict[int, tuple[int, float, list[tuple[str, str]], list[float]]] = {}
    observations: dict[int, str] = {}
    infos: dict[int, dict[str, Any]] = {}
    bar = _progress_bar(len(planned), progress, getattr(policy, "name", "policy"))

    def start(slot: int) -> None:
        episode, qid = queue.popleft()
        options = {"question_id": qid} if qid is not None else None
        obs, info = envs[slot].reset(seed=seed + episode, options=options)
        policy.reset([slot])
        info["slot"] = slot
        observations[slot], infos[slot] = obs, info
        running[slot] = (episode, time.perf_counter(), [("", obs)], [])

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
            for slot, action in zip(slots, actions):
                obs, reward, terminated, truncated, info = envs[slot].step(action)
                info["slot"] = slot
                episode, started, transcript, rewards = running[slot]
                transcript.append((action_to_text(action), obs))
                rewards.append(float(reward))
                observations[slot], infos[slot] = obs, info
                if not (terminated or truncated):
                    continue
                results[episode] = EpisodeResult(
                    record=info["episode"],
                    reward=float(sum(rewards)),
                    breakdown=dict(info["reward_breakdown"]),
                    correct=bool(info["correct"]),
                    transcript=tuple(transcript),
                    wall_time=time.perf_counter() - started,
                    truncated=bool(truncated),
                )
                del running[slot]
                if bar is not None:
                    bar.update(1)
                if queue:
                    start(slot)
    finally:
        if bar is not None:
            bar.close()
        for env in envs:
            env.close()
    return [results[i] for i in range(len(planned))]


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


def _progress_bar(total: int, enabled: bool, description: str):  # -> tqdm | None
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="ep", leave=False)
