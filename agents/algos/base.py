"""What every training algorithm provides to the loop in ``agents.train``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from agents.config import TrainConfig
    from agents.learner import Run


class Algorithm:
    """A training algorithm: its defaults, its checks, and one training step.

    Subclasses set the class attributes and implement ``step``; ``prepare`` runs once before
    the first step (e.g. SFT collects its demonstrations there).
    """

    name: ClassVar[str] = ""
    is_rl: ClassVar[bool] = True
    """RL algorithms sample their own episodes: their log-probs are taken at the sampling
    temperature, and a KL term to the initial policy is available."""
    lr_from_scratch: ClassVar[float] = 1e-4
    """Default peak learning rate for the from-scratch 'tiny' model."""
    lr_pretrained: ClassVar[float] = 2e-6
    """Default peak learning rate for pretrained weights (x10 with LoRA)."""
    default_group_size: ClassVar[int] = 1
    default_kl_coef: ClassVar[float] = 0.0
    default_update_epochs: ClassVar[int] = 1
    uses_value_head: ClassVar[bool] = False

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        """Raise ``ValueError`` for settings this algorithm cannot run with."""

    @classmethod
    def default_minibatch_size(cls, cfg: TrainConfig) -> int:
        """Episodes per optimizer step within a pass (default: the whole batch)."""
        return cfg.episodes_per_step

    @classmethod
    def resolve(cls, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with every field left at ``None`` set to this algorithm's default."""
        if cfg.lr is not None:
            lr = cfg.lr
        elif cfg.model == "tiny":
            lr = cls.lr_from_scratch
        else:
            lr = cls.lr_pretrained * (10 if cfg.lora else 1)
        return dataclasses.replace(
            cfg,
            lr=lr,
            group_size=cfg.group_size or cls.default_group_size,
            kl_coef=cfg.kl_coef if cfg.kl_coef is not None else cls.default_kl_coef,
            update_epochs=cfg.update_epochs or cls.default_update_epochs,
            minibatch_size=cfg.minibatch_size or cls.default_minibatch_size(cfg),
        )

    @classmethod
    def logprob_temperature(cls, cfg: TrainConfig) -> float:
        """RL scores tokens under the tempered distribution they were sampled from; SFT at T = 1."""
        return cfg.temperature if cls.is_rl else 1.0

    @classmethod
    def uses_reference(cls, cfg: TrainConfig) -> bool:
        """Whether the loss has a KL term to the initial policy."""
        return cls.is_rl and (cfg.kl_coef or 0.0) > 0.0

    def prepare(self, run: Run) -> None:
        """Work done once before the first step (nothing by default)."""

    def step(self, run: Run, step: int) -> dict[str, Any]:
        """One training step; returns its metrics (floats, and lists for per-episode values)."""
        raise NotImplementedError

    @classmethod
    def build_value_head(cls, hidden_size: int) -> Any:
        """A critic on the policy's hidden states, or None for critic-free algorithms."""
        return None
