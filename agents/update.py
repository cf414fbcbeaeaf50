"""What every algorithm shares between a batch of episodes and an optimizer step.

    collect    sample episodes from the current policy through the one episode loop
    forward    per-token log-probs of action tokens (+ values, entropy) in one pass
    accumulate backward a loss over micro-batches, weighted to equal one big batch
    step       gradient clipping and the optimizer step

Algorithms in ``agents.algos`` combine these with their own advantages and loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.device import model_device, torch_module

if TYPE_CHECKING:
    import torch

    from agents.learner import Run
    from agents.lm.policy import LMPolicy
    from agents.lm.trajectory import Trajectory

LossFunction = Callable[["Forward", list[int]], tuple[Any, dict[str, float]]]


# -- rollouts ------------------------------------------------------------------------------------


def step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for (run seed, step, purpose): the rollouts of step s are the same on every resume."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0] % (2**31 - 1))


def make_policy(run: Run, *, seed: int, greedy: bool) -> LMPolicy:
    """The learner's current weights as a policy that records tokens and behaviour log-probs."""
    from agents.lm.policy import LMPolicy

    cfg = run.cfg
    policy = LMPolicy(
        run.learner.model,
        run.learner.tokenizer,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        greedy=greedy,
        seed=seed,
        record_trunk=run.learner.boundary,
        name=f"{cfg.algo}-train",
    )
    policy.prefix_cache.sharing = cfg.prefix_sharing
    return policy


@dataclass
class PhaseClock:
    """Wall-clock and CPU seconds per phase of a step (CPU time: this process, all threads).

    >>> clock = PhaseClock()
    >>> with clock("rollout"):
    ...     pass
    >>> sorted(clock.metrics())
    ['rollout_cpu_time', 'rollout_time']
    """

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Time the block as ``phase`` (added to earlier blocks of the same phase)."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[f"{phase}_time"] = (
                self.seconds.get(f"{phase}_time", 0.0) + time.perf_counter() - wall
            )
            cpu_key = f"{phase}_cpu_time"
            self.seconds[cpu_key] = self.seconds.get(cpu_key, 0.0) + time.process_time() - cpu

    def metrics(self) -> dict[str, float]:
        """The phases' seconds as metrics: ``<phase>_time`` and ``<phase>_cpu_time``."""
        return dict(self.seconds)


def generation_metrics(run: Run) -> dict[str, float]:
    """Token counts and decode time of the step's in-process rollout (none on Ray)."""
    stats = run.generation
    if stats is None:
        return {}
    return {
        "prefill_tokens": float(stats.prefill_tokens),
        "shared_prompt_tokens": float(stats.shared_prompt_tokens),
        "generated_tokens": float(stats.generated_tokens),
        "decode_cpu_time": stats.decode_cpu_seconds,
    }


def collect(run: Run, step: int) -> list[Trajectory]:
    """Sample ``episodes_per_step`` episodes from the current policy, in groups of ``group_size``.

    With ``ray_actors > 0`` the episodes are played on Ray actors (``agents.distributed``).
    """
    from agents.lm.trajectory import trajectories_from
    from agents.rollout import run_episodes

    cfg = run.cfg
    run.learner.model.eval()
    policy = make_policy(run, seed=step_seed(cfg.seed, step, 1), greedy=False)
    run.generation = None if cfg.ray_actors > 0 else policy.stats
    if cfg.ray_actors > 0:
        from agents.distributed import run_episodes_on_ray, ship_lm_policy

        # The actors play this step's weights; each chunk samples from its own seed.
        results = run_episodes_on_ray(
            ship_lm_policy(policy), cfg.env_kwargs(), cfg.episodes_per_step, num_actors=cfg.ray_actors,
            num_envs=cfg.num_envs, group_size=cfg.group_size or 1, seed=step_seed(cfg.seed, step, 2),
            policy_seed=policy.seed, progress=False,
        )  # fmt: skip
        return trunk_states_for(run, trajectories_from(results))
    with torch_module().no_grad():
        results = run_episodes(
            policy,
            cfg.env_kwargs(),
            cfg.episodes_per_step,
            num_envs=cfg.num_envs,
            group_size=cfg.group_size or 1,
            seed=step_seed(cfg.seed, step, 2),
            progress=False,
        )
    return trunk_states_for(run, trajectories_from(results))


def trunk_states_for(run: Run, trajectories: list[Trajectory]) -> list[Trajectory]:
    """With ``--train-layers``: every trajectory with its trunk states (computed where missing)."""
    boundary = run.learner.boundary
    if boundary is None:
        return trajectories
    from agents.lm.trunk import with_trunk_states

    padding = pad_id(run.learner.tokenizer)
    return with_trunk_states(run.learner.model, trajectories, boundary, padding, run.cfg.micro_batch_size)


def episode_metrics(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """Reward, accuracy and length of a batch of episodes, and each episode's reward."""
    components = sorted({key for t in trajectories for key in t.breakdown})
    return {
        **{
            f"reward_{key}": float(np.mean([t.breakdown.get(key, 0.0) for t in trajectories]))
            for key in components
        },
        "episode_rewards": [round(float(t.reward), 6) for t in trajectories],  # for intervals later
        "episodes": float(len(trajectories)),
        "reward_mean": float(np.mean([t.reward for t in trajectories])),
        "accuracy": float(np.mean([t.correct for t in trajectories])),
        "tokens": float(sum(len(t.token_ids) for t in trajectories)),
        "seq_len_mean": float(np.mean([len(t.token_ids) for t in trajectories])),
    }


# -- the forward pass ---------------------------------------------------------------------------


@dataclass
class Forward:
    """Per-token quantities aligned with the shifted sequence: position t predicts token t+1."""

    logprobs: torch.Tensor  # [B, T-1], 0 outside action tokens on the fast path
    action_mask: torch.Tensor  # [B, T-1], bool
    values: torch.Tensor | None = None  # [B, T-1], with a value head
    entropy: torch.Tensor | None = None  # [B, T-1], when the entropy bonus is on


def _decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """(transformer body, output projection) of a plain causal LM, or None to use full logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or not hasattr(base, "get_decoder"):
        return None
    head = base.get_output_embeddings()
    return (base.get_decoder(), head) if head is not None else None


def forward(
    model: Any,
    batch: Mapping[str, Any],
    *,
    value_head: Any = None,
    entropy: bool = False,
    value_backprop: bool = False,
    temperature: float = 1.0,
    boundary: int | None = None,
) -> Forward:
    """Log-probs of the batch's action tokens (+ values, entropy) in one pass.

    Same numbers as ``agents.lm.trajectory.sequence_logprobs`` on action tokens (a test checks
    it), but the vocabulary projection runs on action positions only: on the tiny model it is
    ~40% of the compute, and action tokens are ~5% of an episode. Outside action tokens the
    log-probs are constant zeros, so nothing there can carry gradient. With ``boundary`` and
    the batch's ``trunk_states`` (``--train-layers``), only the layers from ``boundary`` up run.
    """
    torch = torch_module()
    action_mask = batch["action_mask"][:, 1:].bool()
    parts = _decoder_and_head(model)
    if parts is None:
        from agents.lm.trajectory import sequence_logprobs

        if value_head is not None or entropy:
            raise NotImplementedError(
                "values and entropy need a model with get_decoder()/get_output_embeddings()"
            )
        return Forward(sequence_logprobs(model, batch, temperature=temperature), action_mask)
    decoder, head = parts
    if boundary is not None and "trunk_states" in batch:
        from agents.lm.trunk import top_forward

        hidden = top_forward(model, batch["trunk_states"], batch["attention_mask"], boundary)
    else:
        hidden = decoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
    states = hidden[:, :-1]
    targets = batch["input_ids"][:, 1:][action_mask]
    logits = head(states[action_mask]).float() / temperature
    log_dist = torch.log_softmax(logits, dim=-1)
    picked = log_dist.gather(-1, targets[:, None]).squeeze(-1)
    logprobs = torch.zeros(action_mask.shape, dtype=picked.dtype, device=picked.device).masked_scatter(
        action_mask, picked
    )
    values = None
    if value_head is not None:
        values = value_head(states if value_backprop else states.detach())
    entropy_values = None
    if entropy:
        per_token = -(log_dist.exp() * log_dist).sum(-1)
        entropy_values = torch.zeros(
            action_mask.shape, dtype=per_token.dtype, device=per_token.device
        ).masked_scatter(action_mask, per_token)
    return Forward(logprobs, action_mask, values, entropy_values)


def run_forward(
    run: Run, model: Any, batch: Mapping[str, Any], *, values: bool = True, entropy: bool = False
) -> Forward:
    """``forward`` at the run's log-prob temperature, with its value head when ``values``."""
    cfg = run.cfg
    return forward(
        model,
        batch,
        value_head=run.learner.value_head if values else None,
        entropy=entropy,
        value_backprop=cfg.value_backprop,
        temperature=run.algorithm.logprob_temperature(cfg),
        boundary=run.learner.boundary,
    )


# -- batches, gradients, the optimizer -----------------------------------------------------------


def chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of ``indices`` of at most ``size`` items."""
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


def micro_batches(trajectories: Sequence[Trajectory], size: int) -> Iterator[list[int]]:
    """The trajectories' indices in micro-batches of at most ``size``, shortest episodes first.

    Episodes of similar length pad less (padding is computed like any token); summing the
    micro-batches' weighted losses gives the same gradient in any grouping. Within a
    micro-batch the rows keep their order, so a batch that fits in one is computed as before.

    >>> from types import SimpleNamespace
    >>> episodes = [SimpleNamespace(token_ids=[0] * n) for n in (5, 1, 4, 2)]
    >>> list(micro_batches(episodes, 2))
    [[1, 3], [0, 2]]
    """
    by_length = sorted(range(len(trajectories)), key=lambda i: len(trajectories[i].token_ids))
    return (sorted(rows) for rows in chunks(by_length, size))


def pad_id(tokenizer: Any) -> int:
    """The id used to pad batches: the tokenizer's pad token, else its EOS token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def pad_rows(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Right-pad 1-D per-sequence tensors to [B, length] with zeros (masked out anyway)."""
    torch = torch_module()
    out = torch.zeros(len(rows), length, device=rows[0].device if rows else None)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def accumulate(
    run: Run, trajectories: Sequence[Trajectory], loss_of: LossFunction
) -> tuple[dict[str, float], int]:
    """Backward ``loss_of(forward, rows)`` over micro-batches, weighted to equal one big batch.

    Returns the weighted means of the statistics ``loss_of`` reports and the action tokens.
    """
    from agents.lm.trajectory import pad_batch

    cfg = run.cfg
    padding = pad_id(run.learner.tokenizer)
    tokens = [sum(t.action_mask[1:]) for t in trajectories]
    total_tokens = sum(tokens)
    if total_tokens == 0:
        raise ValueError("no action tokens in the batch")
    totals: dict[str, float] = {}
    for rows in micro_batches(trajectories, cfg.micro_batch_size):
        batch = pad_batch([trajectories[i] for i in rows], padding, device=model_device(run.learner.model))
        out = run_forward(run, run.learner.model, batch, entropy=cfg.entropy_coef > 0)
        loss, stats = loss_of(out, rows)
        if cfg.aggregation == "token-mean":
            weight = sum(tokens[i] for i in rows) / total_tokens
        else:
            weight = len(rows) / len(trajectories)
        (loss * weight).backward()
        for key, value in {"loss": float(loss.detach()), **stats}.items():
            totals[key] = totals.get(key, 0.0) + weight * value
    return totals, total_tokens


def optimizer_step(run: Run) -> float:
    """Clip gradients (when configured), step the optimizer, zero the gradients; return the norm."""
    torch = torch_module()
    params = run.learner.parameters()
    if run.cfg.max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm)
    else:
        grads = [p.grad.norm() for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.tensor(0.0)
    run.learner.optimizer.step()
    run.learner.optimizer.zero_grad(set_to_none=True)
    return float(norm)
