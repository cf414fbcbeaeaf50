"""The training recipes of the benchmarks, as ``agents.config.TrainConfig`` objects.

One place for the settings that the demo, the learning benchmark and the experiments train
with: the tiny model (5M parameters, from scratch) and SmolLM2-135M-Instruct, both on
single-hop factbook questions with short snippets. Callers pass what they change (steps,
learning rate, question kinds...) as keyword arguments; every other field keeps the recipe's
value or ``TrainConfig``'s default. ``train_argv`` turns a config into the ``python -m
agents.train`` arguments that reproduce it, for subprocesses and for reports.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from agents.config import TrainConfig

PathLike = str | os.PathLike[str]

# The env the tiny model trains in: single-hop questions, short snippets and a short generation
# budget keep an episode cheap on a CPU; one torch thread per run, runs side by side.
TINY: Mapping[str, Any] = {
    "model": "tiny",
    "task": "factbook",
    "hops": 1,
    "max_turns": 4,
    "top_k": 3,
    "snippet_chars": 200,
    "threads": 1,
    "num_envs": 16,
    "max_new_tokens": 32,
    "progress": False,
}
# SmolLM2-135M in bf16 on two shared cores (the README's SmolLM2 runs).
SMOLLM2: Mapping[str, Any] = {
    "model": "smollm2-135m",
    "dtype": "bfloat16",
    "task": "factbook",
    "hops": 1,
    "max_turns": 4,
    "snippet_chars": 200,
    "progress": False,
}


# SmolLM2-135M on one CPU thread, in fp32 (bf16 is slow on CPUs without bf16 instructions), in
# short episodes: the short prompt, two hits of 120 characters, reads of 300 characters around
# the last query's words (issue 16's cheap path; README "Learning on a CPU").
SMOLLM2_CPU: Mapping[str, Any] = {
    "model": "smollm2-135m",
    "dtype": "float32",
    "task": "factbook",
    "hops": 1,
    "max_turns": 4,
    "prompt": "short",
    "snippet_chars": 120,
    "top_k": 2,
    "read_chars": 300,
    "threads": 1,
    "max_new_tokens": 32,
    "progress": False,
}


def _config(base: Mapping[str, Any], values: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrainConfig:
    return TrainConfig(**{**base, **values, **overrides})


def tiny_sft(
    out: PathLike,
    *,
    steps: int = 240,
    lr: float = 3e-3,
    lr_schedule: str = "cosine",
    warmup_steps: int = 20,
    save_every: int | None = None,
    **overrides: Any,
) -> TrainConfig:
    """SFT of the tiny model on oracle demonstrations (batches of 8), warmup then cosine decay.

    Args:
        out: the run folder.
        steps: SFT steps.
        lr: peak learning rate.
        lr_schedule: "cosine" or "constant" after warmup.
        warmup_steps: linear warmup steps.
        save_every: checkpoint interval (default: only the last step).
        **overrides: any other ``TrainConfig`` field (``init``, ``kinds``, ``eval_every``...).
    """
    values = {"algo": "sft", "out": str(out), "steps": steps, "lr": lr, "lr_schedule": lr_schedule}
    values |= {"warmup_steps": warmup_steps, "sft_batch_size": 8, "save_every": save_every or steps}
    return _config(TINY, values, overrides)


def tiny_rl(
    out: PathLike,
    algo: str,
    init: PathLike,
    *,
    steps: int = 15,
    lr: float = 1e-4,
    save_every: int | None = None,
    **overrides: Any,
) -> TrainConfig:
    """RL of the tiny model from a checkpoint (16 episodes a step; KL as the algorithm's default).

    Args:
        out: the run folder.
        algo: ppo, nsr, wreinforce or grpo.
        init: the run or checkpoint the policy starts from (an SFT run).
        steps: RL steps.
        lr: learning rate.
        save_every: checkpoint interval (default: only the last step).
        **overrides: any other ``TrainConfig`` field (``reward_preset``, ``kinds``...).
    """
    values = {"algo": algo, "out": str(out), "init": str(init), "steps": steps, "lr": lr}
    values |= {"episodes_per_step": 16, "save_every": save_every or steps}
    return _config(TINY, values, overrides)


def smollm2_sft(out: PathLike, *, steps: int = 28, **overrides: Any) -> TrainConfig:
    """Full fine-tuning of SmolLM2-135M on oracle demonstrations: 28 steps of 8, lr 1e-4.

    Args:
        out: the run folder.
        steps: SFT steps (the published run stopped at 28).
        **overrides: any other ``TrainConfig`` field.
    """
    values = {"algo": "sft", "out": str(out), "steps": steps, "sft_batch_size": 8, "micro_batch_size": 4}
    values |= {"lr": 1e-4, "warmup_steps": 3, "threads": 2, "save_every": 14}
    return _config(SMOLLM2, values, overrides)


def smollm2_rl(out: PathLike, algo: str, init: PathLike, *, steps: int = 6, **overrides: Any) -> TrainConfig:
    """RL of SmolLM2-135M from an SFT checkpoint: 6 steps x 16 episodes, lr 1e-5.

    PPO keeps micro-batches of 2: with 8 its run was killed at 14.7 GB beside an NSR run.

    Args:
        out: the run folder.
        algo: ppo, nsr, wreinforce or grpo.
        init: the SFT run or checkpoint the policy starts from.
        steps: RL steps.
        **overrides: any other ``TrainConfig`` field.
    """
    values = {"algo": algo, "out": str(out), "init": str(init), "steps": steps, "lr": 1e-5}
    values |= {"max_new_tokens": 32, "episodes_per_step": 16, "num_envs": 8, "threads": 1}
    values |= {"save_every": steps, "micro_batch_size": 2 if algo == "ppo" else 8}
    return _config(SMOLLM2, values, overrides)


def smollm2_cpu_sft(out: PathLike, *, steps: int = 36, **overrides: Any) -> TrainConfig:
    """Full fine-tuning of SmolLM2-135M in short episodes: 36 steps of 8 demonstrations, lr 1e-4.

    Args:
        out: the run folder.
        steps: SFT steps.
        **overrides: any other ``TrainConfig`` field.
    """
    values = {"algo": "sft", "out": str(out), "steps": steps, "sft_batch_size": 8, "micro_batch_size": 2}
    values |= {"lr": 1e-4, "warmup_steps": 3, "save_every": 12, "max_new_tokens": 48}
    return _config(SMOLLM2_CPU, values, overrides)


def smollm2_cpu_rl(
    out: PathLike, algo: str, init: PathLike, *, steps: int = 100, **overrides: Any
) -> TrainConfig:
    """RL of SmolLM2-135M on a CPU: the top 4 layers on trunk states, 16 episodes a step.

    Old log-probs come from the rollout (no rescoring pass); no KL term (as DAPO and Dr.GRPO;
    its reference pass would cost ~5 s a step); 16 envs play a step's episodes in one batch;
    dev EM on 64 questions every 50 steps, and a checkpoint there, all kept, so the checkpoint
    can be chosen on dev.

    Args:
        out: the run folder.
        algo: grpo, nsr, wreinforce, ppo.
        init: the SFT run or checkpoint the policy starts from.
        steps: RL steps.
        **overrides: any other ``TrainConfig`` field (``seed``, ``lr``, ``kl_coef``...).
    """
    values = {"algo": algo, "out": str(out), "init": str(init) if init else None, "steps": steps, "lr": 2e-5}
    values |= {"train_layers": 4, "old_logprobs": "rollout", "episodes_per_step": 16, "num_envs": 16}
    values |= {"kl_coef": 0.0, "micro_batch_size": 4}
    values |= {"eval_every": 50, "eval_episodes": 64, "save_every": 50, "keep_last": steps // 50 + 1}
    return _config(SMOLLM2_CPU, values, overrides)


def train_argv(cfg: TrainConfig) -> list[str]:
    """The ``python -m agents.train`` arguments that rebuild ``cfg`` (its non-default fields).

    Raises:
        ValueError: a field is None where its default is not (no flag can say so).
    """
    argv: list[str] = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(cfg, field.name)
        if value == field.default:
            continue
        flag = field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is None:
            raise ValueError(f"{field.name}=None cannot be written as a flag (default {field.default!r})")
        else:
            argv += [f"--{flag}", str(value)]
    return argv


def train_command(cfg: TrainConfig) -> str:
    """The command line that reproduces ``cfg``, as written to reports."""
    return " ".join(["python -m agents.train", *train_argv(cfg)])
