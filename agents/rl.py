"""The step every RL algorithm shares: collect, score, advantages, clipped loss, update passes.

    collect    ``episodes_per_step`` episodes from the current policy (GRPO: groups of
               ``group_size`` episodes sharing a question and reset seed); with
               ``--train-layers`` they carry their frozen-trunk states (``agents.lm.trunk``)
    score      old log-probs (and the reference's, for KL) with the same forward pass as the
               update, so the first ratio is exactly 1; or, with ``old_logprobs="rollout"``,
               the log-probs recorded while sampling, which saves that forward pass
    advantage  the algorithm's: one per episode (``agents.algos.pg``) or per token (PPO)
    loss       clipped surrogate + kl_coef * KL(pi || pi_ref) - entropy_coef * H
               (+ the algorithm's extra term: PPO's value loss)
    update     ``update_epochs`` passes over the batch in minibatches of ``minibatch_size``

One GRPO step reads in three files: this one, ``agents.algos.pg`` (its advantage) and
``agents.update`` (forward pass, micro-batches, optimizer step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from agents.algos.base import Algorithm
from agents.device import model_device
from agents.losses import aggregate, broadcast_to_tokens, clipped_policy_loss, kl_penalty
from agents.update import (
    Forward,
    LossFunction,
    PhaseClock,
    accumulate,
    chunks,
    collect,
    episode_metrics,
    generation_metrics,
    micro_batches,
    optimizer_step,
    pad_id,
    pad_rows,
    run_forward,
)

if TYPE_CHECKING:
    from agents.config import TrainConfig
    from agents.learner import Run
    from agents.lm.trajectory import Trajectory


@dataclass
class Scored:
    """Per-sequence tensors of a batch under the policy that sampled it, shifted like ``Forward``."""

    masks: list[Tensor] = field(default_factory=list)
    old_logprobs: list[Tensor] = field(default_factory=list)
    old_values: list[Tensor] = field(default_factory=list)
    ref_logprobs: list[Tensor] = field(default_factory=list)
    logprob_gap: float | None = None  # mean |sampled - rescored| log-prob: a check on the token path


def reference_logprobs(run: Run, batch: dict[str, Any]) -> Tensor:
    """Log-probs under the initial policy: a frozen copy, or the LoRA model with adapters off."""
    learner = run.learner
    if learner.reference is not None:
        return run_forward(run, learner.reference, batch, values=False).logprobs
    if run.cfg.lora:
        with learner.model.disable_adapter():
            return run_forward(run, learner.model, batch, values=False).logprobs
    raise RuntimeError("KL to the reference needs a reference policy (kl_coef > 0 without one)")


def score(run: Run, trajectories: Sequence[Trajectory]) -> Scored:
    """Old log-probs, values and reference log-probs of every sequence, without gradient.

    With ``old_logprobs="rescore"`` the old log-probs come from the trainer's own forward pass
    (the first ratio is exactly 1, and ``logprob_gap`` checks them against the rollout's). With
    ``"rollout"`` they are the log-probs recorded while sampling, and a forward pass runs only
    for what still needs one: PPO's values, the KL reference.
    """
    from agents.lm.trajectory import pad_batch

    cfg, learner = run.cfg, run.learner
    device = model_device(learner.model)
    lengths = [len(t.token_ids) - 1 for t in trajectories]
    empty = [torch.zeros(0)] * len(trajectories)
    scored = Scored(list(empty), list(empty), list(empty), list(empty))
    rescore = cfg.old_logprobs == "rescore"
    if not rescore:
        for i, trajectory in enumerate(trajectories):
            scored.masks[i] = torch.tensor(trajectory.action_mask[1:], dtype=torch.bool, device=device)
            scored.old_logprobs[i] = torch.tensor(trajectory.logprobs[1:], dtype=torch.float32, device=device)
    policy_pass = rescore or learner.value_head is not None
    reference_pass = (cfg.kl_coef or 0.0) > 0
    if not (policy_pass or reference_pass):
        return scored
    gaps = []
    learner.model.eval()
    with torch.no_grad():
        for rows in micro_batches(trajectories, cfg.micro_batch_size):
            batch = pad_batch([trajectories[i] for i in rows], pad_id(learner.tokenizer), device=device)
            out = run_forward(run, learner.model, batch) if policy_pass else None
            reference = reference_logprobs(run, batch) if reference_pass else None
            sampled = batch["old_logprobs"][:, 1:]  # token-aligned -> shifted like out.logprobs
            for j, i in enumerate(rows):
                n = lengths[i]
                if reference is not None:
                    scored.ref_logprobs[i] = reference[j, :n]
                if out is None:
                    continue
                if out.values is not None:
                    scored.old_values[i] = out.values[j, :n]
                if rescore:
                    scored.masks[i] = out.action_mask[j, :n]
                    scored.old_logprobs[i] = out.logprobs[j, :n]
                if sampled.shape[1] >= n:
                    gaps.append((sampled[j, :n] - out.logprobs[j, :n]).abs()[scored.masks[i]])
    if gaps:
        scored.logprob_gap = float(torch.cat(gaps).mean())
    return scored


def update_passes(run: Run, trajectories: Sequence[Trajectory], loss_of: LossFunction) -> dict[str, float]:
    """``update_epochs`` shuffled passes of minibatch optimizer steps; the mean of their stats."""
    cfg = run.cfg
    run.learner.model.train()
    totals: dict[str, float] = {}
    updates = 0
    for _ in range(cfg.update_epochs or 1):
        order = run.rng.permutation(len(trajectories)).tolist()
        for minibatch in chunks(order, cfg.minibatch_size or len(trajectories)):
            chosen = [trajectories[i] for i in minibatch]
            index_of = dict(enumerate(minibatch))

            def remapped(out: Forward, rows: list[int], index_of: dict[int, int] = index_of) -> Any:
                return loss_of(out, [index_of[r] for r in rows])

            stats, _ = accumulate(run, chosen, remapped)
            stats["grad_norm"] = optimizer_step(run)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            updates += 1
    return {key: value / updates for key, value in totals.items()}


class PolicyGradient(Algorithm):
    """Collect, score, advantages, clipped surrogate (+ KL, entropy): the step of every RL algorithm.

    Subclasses give ``episode_advantages``; PPO overrides ``token_advantages`` and ``extra_loss``.
    """

    def episode_advantages(self, cfg: TrainConfig, trajectories: Sequence[Trajectory]) -> Tensor:
        """[B] advantages, one per episode."""
        raise NotImplementedError

    def token_advantages(
        self, run: Run, trajectories: Sequence[Trajectory], scored: Scored
    ) -> tuple[list[Tensor], list[Tensor], dict[str, float]]:
        """Per-sequence token advantages, returns (for a critic; empty here) and their metrics."""
        per_episode = self.episode_advantages(run.cfg, trajectories).to(scored.masks[0].device)
        advantages = [
            broadcast_to_tokens(per_episode[i : i + 1], mask[None])[0] for i, mask in enumerate(scored.masks)
        ]
        metrics = {
            "advantage_mean": float(per_episode.mean()),
            "nonzero_advantage_share": float((per_episode != 0).float().mean()),
        }
        return advantages, [], metrics

    def extra_loss(
        self, run: Run, out: Forward, rows: list[int], scored: Scored, returns: list[Tensor]
    ) -> tuple[Tensor | None, dict[str, float]]:
        """A further loss term (PPO's value loss); none here."""
        return None, {}

    def step(self, run: Run, step: int) -> dict[str, Any]:
        """Collect a batch, score it with the frozen old policy, then ``update_epochs`` passes."""
        cfg = run.cfg
        clock = PhaseClock()
        with clock("rollout"):
            trajectories = collect(run, step)
        metrics = episode_metrics(trajectories)
        with clock("score"):
            scored = score(run, trajectories)
        if scored.logprob_gap is not None:
            metrics["logprob_gap"] = scored.logprob_gap
        advantages, returns, advantage_metrics = self.token_advantages(run, trajectories, scored)
        metrics.update(advantage_metrics)

        def loss_of(out: Forward, rows: list[int]) -> tuple[Any, dict[str, float]]:
            width, mask = out.logprobs.shape[1], out.action_mask
            old = pad_rows([scored.old_logprobs[i] for i in rows], width)
            adv = pad_rows([advantages[i] for i in rows], width)
            loss, stats = clipped_policy_loss(out.logprobs, old, adv, mask, cfg.clip_eps, cfg.aggregation)
            stats = {"policy_loss": float(loss.detach()), **stats}
            extra, extra_stats = self.extra_loss(run, out, rows, scored, returns)
            if extra is not None:
                loss = loss + extra
                stats.update(extra_stats)
            if (cfg.kl_coef or 0.0) > 0:
                ref = pad_rows([scored.ref_logprobs[i] for i in rows], width)
                kl = kl_penalty(out.logprobs, ref, mask, cfg.kl_estimator, cfg.aggregation)
                loss = loss + (cfg.kl_coef or 0.0) * kl
                stats["kl"] = float(kl.detach())
            if out.entropy is not None:
                entropy = aggregate(out.entropy, mask, cfg.aggregation)
                loss = loss - cfg.entropy_coef * entropy
                stats["entropy"] = float(entropy.detach())
            return loss, stats

        with clock("update"):
            metrics.update(update_passes(run, trajectories, loss_of))
        run.learner.scheduler.step()
        metrics["action_tokens"] = float(sum(int(m.sum()) for m in scored.masks))
        return {**metrics, **clock.metrics(), **generation_metrics(run)}
