"""The clipped REINFORCE family: GRPO, NSR and W-REINFORCE, which differ only in the advantage.

The step they share (collect, score, clipped surrogate + KL + entropy, update passes) is
``agents.rl.PolicyGradient``; this file holds what differs, one advantage per episode,
broadcast to its action tokens:

    GRPO         (r - mean_g) / std_g over the episode's group of ``group_size``
    NSR          r - 1 with r the binary correctness: only wrong episodes get gradient
    W-REINFORCE  +lambda for a correct episode, -1 for a wrong one

A new advantage-only algorithm (Dr.GRPO, RLOO) is a class here and a line in the registry
(``agents.algos``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agents.rl import PolicyGradient

if TYPE_CHECKING:
    from agents.config import TrainConfig
    from agents.lm.trajectory import Trajectory


# -- advantages ---------------------------------------------------------------------------------


def _as_binary(correct: Tensor) -> Tensor:
    """Correctness [B] as float 0/1, after checking it is binary."""
    if correct.dim() != 1:
        raise ValueError(f"correctness must be [B], got shape {tuple(correct.shape)}")
    if correct.dtype != torch.bool and not torch.all((correct == 0) | (correct == 1)):
        raise ValueError("correctness must be binary (0/1 or bool)")
    return correct.to(torch.float32)


def nsr_advantages(correct: Tensor) -> Tensor:
    """Negative-sample reinforcement: ``A = r - 1`` with ``r in {0, 1}``.

    A wrong episode gets -1 (push its tokens' probability down), a correct one gets exactly 0,
    so only wrong samples produce gradient (Zhu et al., 2025).

    >>> nsr_advantages(torch.tensor([True, False, True]))
    tensor([ 0., -1.,  0.])
    """
    return _as_binary(correct) - 1.0


def wreinforce_advantages(correct: Tensor, positive_weight: float = 0.1) -> Tensor:
    """Weighted REINFORCE: ``A = +lambda`` for a correct episode, ``-1`` for a wrong one.

    Down-weighting positive samples (lambda = 0.1) keeps most of NSR's exploration-preserving
    behaviour while still reinforcing successes a little.

    >>> wreinforce_advantages(torch.tensor([1, 0]), positive_weight=0.1)
    tensor([ 0.1000, -1.0000])
    """
    r = _as_binary(correct)
    return r * positive_weight - (1.0 - r)


def grpo_advantages(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """Group-normalized advantage ``A_i = (r_i - mean_g) / (std_g + eps)`` for i in group g.

    ``std_g`` is the population standard deviation (ddof=0), so a group of one, or a group whose
    rewards are all equal, gets advantage 0 (no baseline information) instead of NaN.
    (TRL's GRPO uses ddof=1; for groups of G the two differ by a factor sqrt((G-1)/G).)

    >>> grpo_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), torch.tensor([0, 0, 1, 1]))
    tensor([ 1.0000, -1.0000,  0.0000,  0.0000])
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must both be [B], got {tuple(rewards.shape)} and {tuple(group_ids.shape)}"
        )
    rewards = rewards.to(torch.float32)
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    zeros = torch.zeros(n_groups, device=rewards.device)
    counts = zeros.index_add(0, inverse, torch.ones_like(rewards))
    means = zeros.index_add(0, inverse, rewards) / counts
    centered = rewards - means[inverse]
    variances = zeros.index_add(0, inverse, centered**2) / counts
    return centered / (torch.sqrt(variances)[inverse] + eps)


# -- the algorithms -------------------------------------------------------------------------------


class GRPO(PolicyGradient):
    """Group-relative policy optimization: the group's mean reward is the baseline."""

    name = "grpo"
    default_group_size = 4
    default_kl_coef = 0.04

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        """A group of one has no baseline."""
        if cfg.group_size is not None and cfg.group_size < 2:
            raise ValueError("grpo needs group_size >= 2: a group of one has no baseline")

    def episode_advantages(self, cfg: TrainConfig, trajectories: Sequence[Trajectory]) -> Tensor:
        """Group-normalized rewards."""
        rewards = torch.tensor([float(t.reward) for t in trajectories])
        groups = torch.tensor([int(t.group_id) for t in trajectories])
        return grpo_advantages(rewards, groups)


class NSR(PolicyGradient):
    """Negative-sample reinforcement: push down wrong episodes, leave correct ones alone."""

    name = "nsr"

    def episode_advantages(self, cfg: TrainConfig, trajectories: Sequence[Trajectory]) -> Tensor:
        """``r - 1`` on binary correctness."""
        return nsr_advantages(torch.tensor([bool(t.correct) for t in trajectories]))


class WReinforce(PolicyGradient):
    """Weighted REINFORCE: correct episodes weigh ``positive_weight``, wrong ones -1."""

    name = "wreinforce"

    def episode_advantages(self, cfg: TrainConfig, trajectories: Sequence[Trajectory]) -> Tensor:
        """``+lambda`` correct, ``-1`` wrong."""
        correct = torch.tensor([bool(t.correct) for t in trajectories])
        return wreinforce_advantages(correct, cfg.positive_weight)
