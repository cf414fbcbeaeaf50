"""PPO for LM search agents: the clipped surrogate with token-level GAE and a value head.

collect, score, update   as every RL algorithm (``agents.rl.PolicyGradient``)
rewards    each episode's reward on its last action token, 0 elsewhere
values     a linear head on the policy's last hidden state (detached by default, so the
           critic cannot pull the policy's representation around)
advantage  GAE over action tokens only (observations are the env's transition), whitened
           over the batch
loss       clipped surrogate + vf_coef * clipped value loss + kl_coef * KL - entropy bonus
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from agents.losses import Aggregation, aggregate, check_token_tensors
from agents.rl import PolicyGradient, Scored
from agents.update import Forward, pad_rows

if TYPE_CHECKING:
    from agents.config import TrainConfig
    from agents.learner import Run
    from agents.lm.trajectory import Trajectory


def terminal_token_rewards(rewards: Tensor, action_mask: Tensor) -> Tensor:
    """Place each episode's reward ``[B]`` on the last action token of its row; 0 elsewhere.

    >>> terminal_token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1, 0], [0, 1, 0]]))
    tensor([[0., 1., 0.],
            [0., 2., 0.]])
    """
    mask = check_token_tensors(action_mask)
    if rewards.shape != (mask.shape[0],):
        raise ValueError(f"rewards must be [B]={mask.shape[0]}, got {tuple(rewards.shape)}")
    if not torch.all(mask.any(dim=1)):
        raise ValueError("every sequence needs at least one action token to carry its reward")
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=1).values
    token_rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    token_rewards[torch.arange(mask.shape[0], device=mask.device), last] = rewards.to(
        mask.device, torch.float32
    )
    return token_rewards


def gae_advantages(
    token_rewards: Tensor,
    values: Tensor,
    action_mask: Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over the action tokens of each sequence.

    Observation, prompt and padding tokens are not decisions of the agent: they are skipped,
    so the "next state" of an action token is the next *action* token of the same row (the
    observations in between are part of the environment's transition), and the value after
    the last action token is 0 (the episode is over). With ``k`` running over action tokens:

    ``delta_k = r_k + gamma * V_{k+1} - V_k``,  ``A_k = delta_k + gamma * lam * A_{k+1}``,
    ``returns_k = A_k + V_k``.

    Returns ``(advantages, returns)``, both [B, T] and 0 outside action tokens, detached.
    """
    mask = check_token_tensors(action_mask, token_rewards, values)
    token_rewards = token_rewards.detach().to(torch.float32)
    values = values.detach().to(torch.float32)
    batch, length = mask.shape
    advantages = torch.zeros(batch, length, device=values.device)
    next_value = torch.zeros(batch, device=values.device)
    next_advantage = torch.zeros(batch, device=values.device)
    for t in reversed(range(length)):
        is_action = mask[:, t]
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(is_action, advantage, torch.zeros_like(advantage))
        next_value = torch.where(is_action, values[:, t], next_value)
        next_advantage = torch.where(is_action, advantage, next_advantage)
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    return advantages, returns


class ValueHead(nn.Module):
    """A linear value estimate ``V(s_t) = w . h_t + b`` on the policy's last hidden state.

    Initialized to zero so the first GAE pass sees ``V = 0`` (plain Monte-Carlo returns) instead
    of noise. The trainer feeds it detached hidden states by default, so the critic never pulls
    the policy's representation around.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """[B, T, H] -> [B, T]."""
        return self.linear(hidden_states.to(self.linear.weight.dtype)).squeeze(-1)


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    action_mask: Tensor,
    clip: float = 0.2,
    aggregation: Aggregation = "token-mean",
) -> Tensor:
    """PPO's clipped value loss.

    ``V_clip = old_V + clamp(V - old_V, -c, c)``,
    ``L = 0.5 * aggregate(max((V - R)^2, (V_clip - R)^2))``: the critic may not move further
    than ``c`` from the values the advantages were computed with, per update.
    """
    mask = check_token_tensors(action_mask, values, old_values, returns)
    old_values = old_values.detach()
    returns = returns.detach()
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    per_token = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * aggregate(per_token, mask, aggregation)


class PPO(PolicyGradient):
    """Proximal policy optimization with a critic, two passes per batch and KL to the start."""

    name = "ppo"
    default_kl_coef = 0.05
    default_update_epochs = 2
    uses_value_head = True

    @classmethod
    def default_minibatch_size(cls, cfg: TrainConfig) -> int:
        """Two minibatches per pass."""
        return max(1, cfg.episodes_per_step // 2)

    @classmethod
    def build_value_head(cls, hidden_size: int) -> ValueHead:
        """The critic: a zero-initialized linear head."""
        return ValueHead(hidden_size)

    def token_advantages(
        self, run: Run, trajectories: Sequence[Trajectory], scored: Scored
    ) -> tuple[list[Tensor], list[Tensor], dict[str, float]]:
        """GAE advantages and returns per sequence, whitened over the batch's action tokens."""
        cfg = run.cfg
        advantages, returns = [], []
        for i, trajectory in enumerate(trajectories):
            mask = scored.masks[i][None]
            rewards = terminal_token_rewards(torch.tensor([float(trajectory.reward)]), mask)
            adv, ret = gae_advantages(rewards, scored.old_values[i][None], mask, cfg.gamma, cfg.gae_lambda)
            advantages.append(adv[0])
            returns.append(ret[0])
        if cfg.normalize_advantages:
            flat = torch.cat([a[m] for a, m in zip(advantages, scored.masks, strict=True)])
            mean, std = flat.mean(), flat.std(unbiased=False)
            advantages = [
                torch.where(m, (a - mean) / (std + 1e-8), torch.zeros_like(a))
                for a, m in zip(advantages, scored.masks, strict=True)
            ]
        return advantages, returns, {}

    def extra_loss(
        self, run: Run, out: Forward, rows: list[int], scored: Scored, returns: list[Tensor]
    ) -> tuple[Tensor | None, dict[str, float]]:
        """``vf_coef`` times the clipped value loss."""
        cfg = run.cfg
        if out.values is None:
            raise RuntimeError("PPO's forward pass returned no values: the run has no value head")
        width = out.logprobs.shape[1]
        value_loss = clipped_value_loss(
            out.values,
            pad_rows([scored.old_values[i] for i in rows], width),
            pad_rows([returns[i] for i in rows], width),
            out.action_mask,
            cfg.value_clip,
            cfg.aggregation,
        )
        return cfg.vf_coef * value_loss, {"value_loss": float(value_loss.detach())}
