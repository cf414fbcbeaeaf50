"""Supervised data for the SFT trainer: oracle demonstrations and rejection-sampled successes.

Both sources end up as ``agents.lm.trajectory.Trajectory`` objects, so SFT goes through the
same ``pad_batch -> sequence_logprobs`` path, with the same action mask, as the RL trainers:
the loss sees the tokens the agent wrote (actions) and never the prompt or the observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.records import Question

if TYPE_CHECKING:
    from agents.lm.trajectory import Trajectory
    from agents.rollout import EpisodeResult


def select_questions(
    task_name: str,
    split: str,
    *,
    hops: int | None = None,
    kinds: Sequence[str] | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Question, ...]:
    """The questions of a split, optionally restricted to a hop count and to question kinds."""
    from searchenv.resources import shared_task

    task = shared_task(task_name, **dict(task_kwargs or {}))
    questions = tuple(
        q
        for q in task.questions(split)
        if (hops is None or q.hops == hops) and (kinds is None or q.kind in set(kinds))
    )
    if not questions:
        raise ValueError(f"no {split!r} questions in task {task_name!r} with hops={hops} and kinds={kinds}")
    return questions


def sample_question_ids(questions: Sequence[Question], limit: int | None, seed: int) -> list[str]:
    """All question ids, or ``limit`` of them drawn without replacement (seeded, order kept)."""
    ids = [q.qid for q in questions]
    if limit is None or limit >= len(ids):
        return ids
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    chosen = np.random.default_rng(seed).choice(len(ids), size=limit, replace=False)
    return [ids[i] for i in sorted(chosen)]


def results_to_trajectories(results: Sequence[EpisodeResult], tokenizer: Any) -> list[Trajectory]:
    """Encode finished episodes (prompt, then (action, observation) pairs) with their action mask."""
    from agents.lm.chat import encode_transcript
    from agents.lm.trajectory import Trajectory

    trajectories = []
    for index, result in enumerate(results):
        token_ids, action_mask = encode_transcript(tokenizer, result.transcript)
        trajectories.append(
            Trajectory(
                question_id=result.question_id,
                token_ids=list(token_ids),
                action_mask=list(action_mask),
                logprobs=[0.0] * len(token_ids),  # not sampled from the policy: no behaviour log-probs
                reward=float(result.reward),
                correct=bool(result.correct),
                breakdown=dict(result.breakdown),
                group_id=index,
            )
        )
    return trajectories


def oracle_demonstrations(
    tokenizer: Any,
    env_kwargs: Mapping[str, Any],
    question_ids: Sequence[str],
    *,
    num_envs: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> list[Trajectory]:
    """Run ``OraclePolicy`` once per question and keep the correct episodes as demonstrations.

    The oracle knows the gold evidence but acts only through queries a model could write, so
    its transcripts are valid behaviour for the policy to imitate. An oracle episode that
    fails (rare: e.g. an answer the env normalizes differently) is dropped, not imitated.
    """
    from agents.rollout import run_episodes
    from agents.scripted import OraclePolicy
    from searchenv.resources import shared_task

    task = shared_task(env_kwargs.get("task", "factbook"), **dict(env_kwargs.get("task_kwargs") or {}))
    results = run_episodes(
        OraclePolicy(task, seed=seed),
        env_kwargs,
        question_ids=list(question_ids),
        num_envs=num_envs,
        seed=seed,
        progress=progress,
    )
    successes = [r for r in results if r.correct]
    if not successes:
        raise RuntimeError("the oracle solved none of the questions: check the task and env settings")
    return results_to_trajectories(successes, tokenizer)


def keep_successes(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """Rejection sampling: the correct episodes of the current policy become SFT targets."""
    return [t for t in trajectories if t.correct]


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
    start = step * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_examples)
        order = np.random.default_rng([seed, epoch]).permutation(n_examples)
        indices.append(int(order[offset]))
    return indices
