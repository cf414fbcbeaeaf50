"""Group mode: every member of a group gets the same question (for GRPO-style baselines)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper


class GroupedQuestions(VectorWrapper):
    """Seeds env ``i`` of a vector env with ``base + i // group_size``.

    An env draws its question only from ``self.np_random``, one draw per reset, so envs with
    the same seed ask the same question in their k-th episode, autoresets included. Without a
    seed, the base seed comes from this wrapper's own generator.
    """

    def __init__(self, env: VectorEnv, group_size: int, seed: int | None = None) -> None:
        super().__init__(env)
        if group_size < 1 or env.num_envs % group_size:
            raise ValueError(f"num_envs={env.num_envs} is not a multiple of group_size={group_size}")
        self.group_size = group_size
        self._seed_source = np.random.default_rng(seed)

    @property
    def num_groups(self) -> int:
        return self.num_envs // self.group_size

    def group_of(self, index: int) -> int:
        return index // self.group_size

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if isinstance(seed, list):
            raise ValueError("group mode seeds its members itself; pass one int seed")
        base = int(self._seed_source.integers(2**31 - 1)) if seed is None else seed
        seeds = [base + self.group_of(i) for i in range(self.num_envs)]
        return self.env.reset(seed=seeds, options=options)


def make_group_vec(
    num_groups: int,
    group_size: int,
    *,
    env_id: str = "SearchQA-v0",
    vectorization_mode: str = "sync",
    seed: int | None = None,
    **env_kwargs: Any,
) -> GroupedQuestions:
    """A vector env of ``num_groups * group_size`` envs in which each group shares its question."""
    vec = gym.make_vec(
        env_id, num_envs=num_groups * group_size, vectorization_mode=vectorization_mode, **env_kwargs
    )
    return GroupedQuestions(vec, group_size, seed=seed)
