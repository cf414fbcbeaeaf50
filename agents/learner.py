"""The trainable state of a run (weights, critic, optimizer, reference) and the run context."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.algos.base import Algorithm
from agents.config import TrainConfig
from agents.device import resolve_device, torch_module
from agents.lm.trunk import boundary_layer, freeze_trunk
from agents.weights import add_lora, load_base_model, load_weights_into, resolve_checkpoint

if TYPE_CHECKING:
    import torch


@dataclass
class Learner:
    """Policy weights, value head, optimizer and the frozen reference of a run."""

    model: Any
    tokenizer: Any
    value_head: Any | None
    reference: Any | None  # a frozen copy of the initial policy, or None (no KL, or LoRA)
    optimizer: Any
    scheduler: Any
    base_source: str  # what the weights started from: --init checkpoint or --model
    boundary: int | None = None  # with --train-layers: the first trained layer (agents.lm.trunk)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trainable parameter: the policy's (LoRA adapters only, with LoRA) and the critic's."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params


@dataclass
class Run:
    """What every step sees: config, algorithm, learner, the run's generator, evaluation ids."""

    cfg: TrainConfig
    algorithm: Algorithm
    learner: Learner
    rng: np.random.Generator
    eval_question_ids: list[str] = field(default_factory=list)
    generation: Any = None  # the last in-process rollout's GenerationStats (agents.lm.policy)


def lr_factor(cfg: TrainConfig) -> Any:
    """The learning-rate multiplier per scheduler step: linear warmup, then constant or cosine."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            span = max(1, cfg.steps - cfg.warmup_steps)
            progress = min(1.0, (step - cfg.warmup_steps) / span)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def base_config(model: Any) -> Any:
    """The transformers config of a model, through a peft wrapper if there is one."""
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def build_learner(cfg: TrainConfig, algorithm: type[Algorithm], resume_from: Path | None = None) -> Learner:
    """Initial weights (from --init or --model), LoRA, value head, reference, optimizer.

    On resume, the policy weights, value head, optimizer and scheduler come from the checkpoint;
    the reference is rebuilt from the initial weights, never from the resumed ones.
    """
    torch = torch_module()
    base_source = str(resolve_checkpoint(Path(cfg.init))) if cfg.init else cfg.model
    device = resolve_device(cfg.device)
    model, tokenizer = load_base_model(
        base_source,
        task=cfg.task,
        seed=cfg.seed,
        dtype=cfg.dtype,
        cache_dir=cfg.cache_dir,
        device=cfg.device,
        task_kwargs=cfg.task_kwargs,
    )
    needs_reference = algorithm.uses_reference(cfg) and not cfg.lora
    reference = copy.deepcopy(model).eval().requires_grad_(False) if needs_reference else None
    if cfg.lora:
        model = add_lora(model, cfg.lora_rank, cfg.lora_alpha)
    if cfg.train_layers is not None:
        freeze_trunk(model, cfg.train_layers)
    if resume_from is not None:
        load_weights_into(model, resume_from, lora=cfg.lora)
    value_head = algorithm.build_value_head(int(base_config(model).hidden_size))
    if value_head is not None:
        value_head = value_head.to(device)
        if resume_from is not None:
            value_head.load_state_dict(
                torch.load(resume_from / "value_head.pt", weights_only=True, map_location=device)
            )
    params = [p for p in model.parameters() if p.requires_grad]
    if value_head is not None:
        params += list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    if resume_from is not None:
        optimizer.load_state_dict(
            torch.load(resume_from / "optimizer.pt", weights_only=True, map_location=device)
        )
        scheduler.load_state_dict(torch.load(resume_from / "scheduler.pt", weights_only=True))
    boundary = boundary_layer(model, cfg.train_layers) if cfg.train_layers is not None else None
    return Learner(model, tokenizer, value_head, reference, optimizer, scheduler, base_source, boundary)
