"""Objectives against hand-computed values, and the masking guarantees the trainers rely on.

The tensors are fp32 and a few elements long, so any kernel's result is within a few ulps of the
hand-computed value: pytest.approx's default (rel 1e-6, ~10 fp32 ulps) and torch.allclose's
(rtol 1e-5) hold on every CPU, while a wrong term or sign is off by 1e-1 and more. Zero gradients
are compared exactly: they are zeros by construction (masks), not by cancellation.
"""

from __future__ import annotations

import math

import pytest
import torch

from agents.algos.pg import grpo_advantages, nsr_advantages, wreinforce_advantages
from agents.algos.ppo import ValueHead, clipped_value_loss, gae_advantages, terminal_token_rewards
from agents.algos.sft import sft_loss
from agents.losses import aggregate, clipped_policy_loss, entropy_from_logits, kl_penalty, whiten

torch.set_num_threads(1)

MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_sft_loss_is_masked_token_nll() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]])
    assert float(sft_loss(logprobs, mask)) == pytest.approx((2 + 3 + 4) / 3)
    assert float(sft_loss(logprobs, mask, "sequence-mean")) == pytest.approx(((2 + 3) / 2 + 4) / 2)


def test_nsr_advantage_and_loss() -> None:
    correct = torch.tensor([True, False])
    assert nsr_advantages(correct).tolist() == [0.0, -1.0]
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.7, -0.9]], requires_grad=True)
    loss, stats = clipped_policy_loss(logprobs, logprobs.detach(), nsr_advantages(correct), MASK)
    # 5 action tokens; the 3 of the wrong sequence carry A = -1 at ratio 1.
    assert loss.item() == pytest.approx(3 / 5)
    loss.backward()
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.2, 0.2]])
    assert torch.allclose(logprobs.grad, expected)
    assert stats["clip_fraction"] == 0.0 and stats["ratio_mean"] == pytest.approx(1.0)


def test_wreinforce_advantage_and_loss() -> None:
    correct = torch.tensor([1, 0])
    advantages = wreinforce_advantages(correct, positive_weight=0.1)
    assert torch.allclose(advantages, torch.tensor([0.1, -1.0]))
    logprobs = torch.zeros(2, 3)
    loss, _ = clipped_policy_loss(logprobs, logprobs, advantages, MASK)
    assert loss.item() == pytest.approx(-(2 * 0.1 - 3 * 1.0) / 5)


def test_binary_correctness_is_enforced() -> None:
    with pytest.raises(ValueError, match="binary"):
        nsr_advantages(torch.tensor([0.5, 1.0]))


def test_grpo_group_normalization() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 3.0, 1.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 7])
    advantages = grpo_advantages(rewards, groups, eps=1e-6)
    # group 0: mean .5, std .5; group 1: constant -> 0; group 2: mean 2, std 1; a group of one -> 0.
    expected = [0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6), 0.0, 0.0, 1 / (1 + 1e-6), -1 / (1 + 1e-6), 0.0]
    assert advantages.tolist() == pytest.approx(expected)
    # groups need not be contiguous or sorted
    shuffled = grpo_advantages(rewards[[4, 0, 6, 1, 5]], groups[[4, 0, 6, 1, 5]], eps=1e-6)
    assert shuffled.tolist() == pytest.approx([expected[i] for i in (4, 0, 6, 1, 5)])


def test_grpo_loss_token_mean_versus_sequence_mean() -> None:
    advantages = grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([3, 3]), eps=0.0)
    assert advantages.tolist() == [1.0, -1.0]
    logprobs = torch.zeros(2, 3)
    token_mean, _ = clipped_policy_loss(logprobs, logprobs, advantages, MASK, aggregation="token-mean")
    sequence_mean, _ = clipped_policy_loss(logprobs, logprobs, advantages, MASK, aggregation="sequence-mean")
    # token-mean: the wrong episode has 3 action tokens, the right one 2 -> -(2 - 3) / 5
    assert token_mean.item() == pytest.approx(0.2)
    # sequence-mean: each episode weighs the same -> -(1 - 1) / 2
    assert sequence_mean.item() == pytest.approx(0.0)


def test_clipped_surrogate_hand_computed() -> None:
    old = torch.zeros(1, 4)
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    logprobs = torch.log(ratios).requires_grad_(True)
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, stats = clipped_policy_loss(logprobs, old, advantages, torch.ones(1, 4), clip_eps=0.2)
    # min(rho A, clip(rho) A) = 1.2, -1.5, 0.5, -0.8
    assert loss.item() == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)
    loss.backward()
    # Clipped branches (1st, 4th) give no gradient; others -A rho / N.
    assert torch.allclose(logprobs.grad, torch.tensor([[0.0, 1.5 / 4, -0.5 / 4, 0.0]]))
    assert stats["clip_fraction"] == 1.0


def test_gae_hand_worked_example() -> None:
    gamma, lam = 0.9, 0.5
    mask = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0]])
    values = torch.tensor([[0.5, 0.6, 9.0, 9.0, 0.8, 9.0], [9.0, 0.2, 0.3, 9.0, 9.0, 9.0]])
    token_rewards = terminal_token_rewards(torch.tensor([1.0, 1.0]), mask)
    assert token_rewards.tolist() == [[0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0]]
    advantages, returns = gae_advantages(token_rewards, values, mask, gamma=gamma, lam=lam)
    # row 0, action tokens 0, 1, 4 (tokens 2-3 are an observation, 5 is padding):
    #   k=4: delta = 1 - .8 = .2, A = .2
    #   k=1: delta = .9 * .8 - .6 = .12, A = .12 + .45 * .2 = .21
    #   k=0: delta = .9 * .6 - .5 = .04, A = .04 + .45 * .21 = .1345
    # row 1: k=2: A = .7; k=1: delta = .9 * .3 - .2 = .07, A = .07 + .45 * .7 = .385
    assert advantages.tolist()[0] == pytest.approx([0.1345, 0.21, 0, 0, 0.2, 0])
    assert advantages.tolist()[1] == pytest.approx([0, 0.385, 0.7, 0, 0, 0])
    assert returns.tolist()[0] == pytest.approx([0.6345, 0.81, 0, 0, 1.0, 0])
    # gamma = lam = 1: every action token's advantage is the Monte-Carlo return minus its value.
    mc, _ = gae_advantages(token_rewards, values, mask, gamma=1.0, lam=1.0)
    assert mc.tolist()[0] == pytest.approx([0.5, 0.4, 0, 0, 0.2, 0])


def test_value_loss_clipped() -> None:
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)


def test_kl_estimators() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -7.0]])
    ref = torch.tensor([[-1.5, -1.0, 3.0]])
    mask = torch.tensor([[1, 1, 0]])
    k3 = (math.exp(-0.5) + 0.5 - 1 + math.exp(1.0) - 1 - 1) / 2
    assert float(kl_penalty(logprobs, ref, mask, "k3")) == pytest.approx(k3)
    assert float(kl_penalty(logprobs, ref, mask, "k1")) == pytest.approx((0.5 - 1.0) / 2)
    assert float(kl_penalty(ref, ref, mask, "k3")) == 0.0


def test_whiten_and_errors() -> None:
    values = torch.tensor([[1.0, 3.0, 100.0]])
    white = whiten(values, torch.tensor([[1, 1, 0]]))
    assert white.tolist()[0] == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
    with pytest.raises(ValueError, match="no action tokens"):
        aggregate(values, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="0 and 1"):
        aggregate(values, torch.full((1, 3), 2))
    with pytest.raises(ValueError, match="shape"):
        aggregate(values, torch.ones(1, 2))


def test_value_head_starts_at_zero() -> None:
    head = ValueHead(8)
    assert torch.count_nonzero(head(torch.randn(2, 5, 8))) == 0


# --- masking guarantees, through real logits -------------------------------------------------

B, T, V = 3, 7, 11
OBS_MASK = torch.tensor(
    [
        [0, 0, 1, 1, 0, 0, 1],  # prompt, action, observation, action
        [0, 1, 1, 1, 0, 1, 0],  # ..., trailing padding
        [0, 0, 0, 1, 1, 0, 0],
    ]
)


def _logits_and_logprobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=generator).requires_grad_(True)
    targets = torch.randint(0, V, (B, T), generator=generator)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return logits, logprobs


def _losses(logits: torch.Tensor, logprobs: torch.Tensor, name: str) -> torch.Tensor:
    mask = OBS_MASK
    # Garbage (NaN, huge) at masked positions of the inputs must not leak into the loss.
    garbage = torch.where(mask.bool(), logprobs.detach() - 0.1, torch.full_like(logprobs, float("nan")))
    correct = torch.tensor([True, False, True])
    if name == "sft":
        return sft_loss(logprobs, mask)
    if name == "nsr":
        return clipped_policy_loss(logprobs, garbage, nsr_advantages(correct), mask)[0]
    if name == "wreinforce":
        return clipped_policy_loss(logprobs, garbage, wreinforce_advantages(correct), mask)[0]
    if name == "grpo":
        advantages = grpo_advantages(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0, 0, 0]))
        return clipped_policy_loss(logprobs, garbage, advantages, mask, aggregation="sequence-mean")[0]
    if name == "ppo":
        hidden = torch.randn(B, T, 4, generator=torch.Generator().manual_seed(1))
        head = ValueHead(4)
        nn_values = head(hidden + logits[..., :4])  # values that depend on the logits too
        values = torch.where(mask.bool(), nn_values, torch.full_like(nn_values, 1e30))
        rewards = terminal_token_rewards(torch.tensor([1.0, 0.0, 0.3]), mask)
        advantages, returns = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.95)
        policy_loss, _ = clipped_policy_loss(logprobs, garbage, whiten(advantages, mask), mask)
        value_loss = clipped_value_loss(values, values.detach(), returns, mask)
        kl = kl_penalty(logprobs, garbage, mask)
        entropy = torch.where(mask.bool(), entropy_from_logits(logits), torch.full((B, T), float("inf")))
        return policy_loss + 0.5 * value_loss + 0.1 * kl - 0.01 * aggregate(entropy, mask)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["sft", "nsr", "wreinforce", "grpo", "ppo"])
def test_observation_token_logits_get_exactly_zero_gradient(name: str) -> None:
    logits, logprobs = _logits_and_logprobs()
    loss = _losses(logits, logprobs, name)
    assert torch.isfinite(loss)
    loss.backward()
    grad = logits.grad
    assert grad is not None
    masked_rows = grad[~OBS_MASK.bool()]
    assert torch.count_nonzero(masked_rows) == 0
    action_rows = grad[OBS_MASK.bool()]
    assert torch.isfinite(action_rows).all()
    assert torch.count_nonzero(action_rows) > 0


def test_nsr_all_correct_batch_gives_exactly_zero_gradient() -> None:
    logits, logprobs = _logits_and_logprobs(seed=3)
    stale = logprobs.detach() + torch.randn(B, T, generator=torch.Generator().manual_seed(4))  # ratio != 1
    loss, _ = clipped_policy_loss(logprobs, stale, nsr_advantages(torch.ones(B, dtype=torch.bool)), OBS_MASK)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
