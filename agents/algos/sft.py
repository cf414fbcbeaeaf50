"""Supervised fine-tuning: masked NLL of demonstrated actions.

demonstrations  the oracle plays each training question once through the episode loop,
                recorded as tokens by ``DemonstrationPolicy`` (the same token path as
                sampled episodes); failed episodes are dropped
(or)            rejection sampling: the policy's own correct episodes of this step
batch           consecutive slices of per-epoch seeded permutations (resumable)
loss            L = - aggregate(log pi(y_t | y_<t)) over action tokens only: the model is
                never trained to predict observations or the prompt
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from agents.algos.base import Algorithm
from agents.losses import Aggregation, aggregate
from agents.update import accumulate, collect, episode_metrics, optimizer_step, trunk_states_for

if TYPE_CHECKING:
    from agents.learner import Run
    from agents.lm.trajectory import Trajectory
    from agents.rollout import EpisodeResult
    from agents.update import Forward


def sft_loss(logprobs: Tensor, action_mask: Tensor, aggregation: Aggregation = "token-mean") -> Tensor:
    """Masked negative log-likelihood of the demonstrated actions.

    >>> import torch
    >>> float(sft_loss(torch.tensor([[-1.0, -3.0]]), torch.tensor([[1, 0]])))
    1.0
    """
    return -aggregate(logprobs, action_mask, aggregation)


def epoch_batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of SFT batch ``step``: consecutive slices of per-epoch seeded permutations.

    Stateless (a function of ``step`` only), so a resumed run sees exactly the batches the
    uninterrupted run would have seen. Batches may straddle an epoch boundary.

    >>> sorted(epoch_batch_indices(4, 2, 0, seed=0) + epoch_batch_indices(4, 2, 1, seed=0))
    [0, 1, 2, 3]
    >>> len(epoch_batch_indices(3, 2, 1, seed=0))
    2
    """
    if n_examples < 1 or batch_size < 1 or step < 0:
        raise ValueError(
            f"need n_examples, batch_size >= 1 and step >= 0; got {n_examples}, {batch_size}, {step}"
        )
    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n_examples)
        order = np.random.default_rng([seed, epoch]).permutation(n_examples)
        indices.append(int(order[offset]))
    return indices


def imitable(result: EpisodeResult) -> bool:
    """Whether every passage the episode read was shown by one of its searches first.

    The oracle reads a gold passage by id when no query surfaced it; a model cannot know that
    id, so imitating such an episode teaches it to read ids it never saw.
    """
    shown: set[str] = set()
    for turn in result.record.turns:
        if turn.tool == "search":
            shown.update(turn.hit_doc_ids)
        elif turn.tool == "read" and turn.argument not in shown:
            return False
    return True


def oracle_demonstrations(run: Run, question_ids: list[str]) -> list[Trajectory]:
    """The oracle's correct episodes on ``question_ids``, as the learner's tokens.

    The oracle knows the gold evidence but acts only through queries a model could write, so its
    transcripts are behaviour the policy can imitate. An oracle episode that fails, or that does
    not fit the model's context, is dropped rather than imitated.
    """
    from agents.lm.tokens import DemonstrationPolicy, context_limit
    from agents.lm.trajectory import trajectories_from
    from agents.rollout import run_episodes
    from agents.scripted import OraclePolicy
    from searchenv.resources import shared_task

    cfg, learner = run.cfg, run.learner
    teacher = DemonstrationPolicy(
        OraclePolicy(
            shared_task(cfg.task, **cfg.task_kwargs),
            seed=cfg.seed,
            first_query=cfg.sft_source.removeprefix("oracle-") if cfg.sft_source != "oracle" else "question",
        ),
        learner.tokenizer,
        max_context_tokens=context_limit(learner.model, None),
        max_new_tokens=cfg.max_new_tokens,
    )
    results = run_episodes(
        teacher,
        cfg.env_kwargs(),
        question_ids=question_ids,
        num_envs=cfg.num_envs,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    kept = [r for r in results if r.correct and r.tokens is not None and not r.tokens.context_exhausted]
    if cfg.sft_source != "oracle":  # the first recipe's demonstrations stay as they were
        kept = [r for r in kept if imitable(r)]
    if not kept:
        raise RuntimeError("the oracle solved none of the questions: check the task and env settings")
    return trajectories_from(kept)


class SFT(Algorithm):
    """Supervised fine-tuning on oracle demonstrations or on rejection-sampled successes."""

    name = "sft"
    is_rl = False
    lr_from_scratch = 2e-3
    lr_pretrained = 5e-5

    def __init__(self) -> None:
        """Start with no demonstrations; ``prepare`` collects them."""
        self.demonstrations: list[Trajectory] = []

    def prepare(self, run: Run) -> None:
        """Collect the oracle demonstrations once (the oracle sources only)."""
        from searchenv.questions import sample_question_ids, select_questions

        cfg = run.cfg
        if cfg.sft_source != "rejection":
            questions = select_questions(
                cfg.task, cfg.split, hops=cfg.hops, kinds=cfg.kind_list, task_kwargs=cfg.task_kwargs
            )
            ids = sample_question_ids(questions, cfg.sft_questions, cfg.seed)
            self.demonstrations = oracle_demonstrations(run, ids)

    def step(self, run: Run, step: int) -> dict[str, Any]:
        """Masked NLL on a batch of demonstrations (oracle) or of the policy's own successes."""
        cfg = run.cfg
        metrics: dict[str, Any] = {}
        if cfg.sft_source != "rejection":
            indices = epoch_batch_indices(len(self.demonstrations), cfg.sft_batch_size, step, cfg.seed)
            # With --train-layers the trunk is frozen: a demonstration's states are computed the
            # first time it is drawn and kept for its later epochs.
            batch = trunk_states_for(run, [self.demonstrations[i] for i in indices])
            for i, demonstration in zip(indices, batch, strict=True):
                self.demonstrations[i] = demonstration
            metrics["epoch"] = step * cfg.sft_batch_size / len(self.demonstrations)
        else:
            sampled = collect(run, step)
            metrics.update(episode_metrics(sampled))
            batch = [t for t in sampled if t.correct]
            metrics["kept"] = float(len(batch))
            if not batch:  # nothing to imitate this step; the scheduler still advances
                run.learner.scheduler.step()
                return {**metrics, "skipped": 1.0}

        run.learner.model.train()

        def loss_of(out: Forward, rows: list[int]) -> tuple[Any, dict[str, float]]:
            return sft_loss(out.logprobs, out.action_mask, cfg.aggregation), {}

        stats, action_tokens = accumulate(run, batch, loss_of)
        metrics.update(stats)
        metrics["action_tokens"] = float(action_tokens)
        metrics.setdefault("tokens", float(sum(len(t.token_ids) for t in batch)))
        metrics["grad_norm"] = optimizer_step(run)
        run.learner.scheduler.step()
        return metrics
