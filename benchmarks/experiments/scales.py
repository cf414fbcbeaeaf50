"""The experiments' scales, their data, and the training runs an experiment is made of.

A :class:`Scale` fixes the model, the episode settings, the budgets, the seeds and which RL
arms answer each question; ``sft_configs`` and ``rl_config`` turn it into ``benchmarks.recipes``
configs, so every run is a plain ``python -m agents.train`` command.

Scales:

- ``QUICK``: the tiny model with tiny budgets, a plumbing check in about a minute (tests).
- ``FULL``: the tiny model (5M parameters) on five small-vocabulary question kinds, one seed.
- ``SMOLLM2``: SmolLM2-135M on every single-hop kind in the short episodes of the cheap CPU
  path (issue 16's recipes), two seeds per arm, 100 RL steps, checkpoints chosen on dev. The
  start is the SFT recipe on titled oracle demonstrations, 48 steps (chosen on dev among 36, 48
  and 60: 0.641, 0.672, 0.641). Its runs live in ``runs/smollm2``; the pilot runs from the
  first SFT recipe (question-word queries, 36 steps) are in ``runs/cpu``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agents.config import TrainConfig
from benchmarks import recipes

# Question kinds with a small answer vocabulary: the 5M-parameter tiny model cannot yet copy an
# entity from a passage, but it can learn which answers are plausible, so EM is not stuck at 0.
KINDS = "government_type,official_language,currency,anthem,national_symbol"
TASK = "factbook"


@dataclass(frozen=True)
class Arm:
    """One RL arm: an algorithm under a reward preset, with any other training fields it needs."""

    algo: str
    preset: str
    fields: tuple[tuple[str, Any], ...] = ()


# rezero-no-retry is rezero-strict without its retry term (strictness only changes that term).
# rs-sft is rejection-sampled SFT: the policy's own correct episodes of each step, imitated (the
# cheapest RL-like baseline), on the same rollouts and trained layers as the RL arms.
RL_RUNS: Mapping[str, Arm] = MappingProxyType(
    {
        "ppo-rezero": Arm("ppo", "rezero"),
        "ppo-no-retry": Arm("ppo", "rezero-no-retry"),
        "ppo-strict": Arm("ppo", "rezero-strict"),
        "grpo": Arm("grpo", "rezero-strict"),
        "nsr": Arm("nsr", "rezero-strict"),
        "wreinforce": Arm("wreinforce", "rezero-strict"),
        "grpo-no-retry": Arm("grpo", "rezero-no-retry"),
        "grpo-rezero": Arm("grpo", "rezero"),
        "rs-sft": Arm("sft", "rezero-strict", (("sft_source", "rejection"),)),
    }
)


@dataclass(frozen=True)
class Arms:
    """Which RL arms (names of ``RL_RUNS``) answer each question at a scale."""

    persistence: tuple[str, str]
    """(with the retry term, without it): the same trainer and budget."""
    passk: tuple[str, ...]
    """The RL policies whose pass@k (and query diversity) is set against the SFT start's."""
    hacking: tuple[str, str]
    """(lenient ``rezero``, ``rezero-strict``): does the strict retry term stop repeat queries?"""
    learning: tuple[str, ...] = ()
    """The README's learning table: RL (and RL-like) arms against the SFT start."""


TINY_ARMS = Arms(
    ("ppo-rezero", "ppo-no-retry"), ("ppo-strict", "grpo", "nsr", "wreinforce"), ("ppo-rezero", "ppo-strict")
)
# The arms at 135M: GRPO is the trainer of the retry and hacking questions.
SMOLLM2_ARMS = Arms(
    ("grpo", "grpo-no-retry"),
    ("grpo", "ppo-strict", "nsr", "wreinforce"),
    ("grpo-rezero", "grpo"),
    learning=("grpo", "nsr", "wreinforce", "rs-sft"),
)

# NSR pushes only wrong episodes down: at the GRPO recipe's lr (2e-5) 100 steps left the
# policy where it was (pilot: +0.012 test EM, flat reward), so it takes 5x the lr, with dev
# evaluations (and checkpoints) every 25 steps to catch a collapse.
NSR_CPU_FIELDS: Mapping[str, Any] = MappingProxyType(
    {"lr": 1e-4, "eval_every": 25, "save_every": 25, "keep_last": 5}
)
TINY_ENV: Mapping[str, Any] = MappingProxyType({"max_turns": 4, "top_k": 3, "snippet_chars": 200})
# The short episodes of recipes.SMOLLM2_CPU, the same in training and at test time.
SMOLLM2_ENV: Mapping[str, Any] = MappingProxyType(
    {"max_turns": 4, "prompt": "short", "top_k": 2, "snippet_chars": 120, "read_chars": 300}
)


@dataclass(frozen=True)
class Scale:
    """Model, episode settings, budgets, seeds and arms of one experiment run."""

    name: str
    model: str
    """``tiny`` or ``smollm2-135m``."""
    base_sft_steps: int
    """Tiny only: SFT from scratch on every single-hop kind before ``sft_steps`` on ``kinds``."""
    sft_steps: int
    rl_steps: int
    rl_episodes: int
    rl_lr: float
    passk_questions: int
    passk_samples: int
    """Samples per question and seed at temperature 1 (pass@k up to this k)."""
    eval_questions: int | None
    """Greedy test questions (None: every test question of the kinds)."""
    probe_questions: int | None
    """Scripted-probe test questions (None: the whole test split)."""
    num_envs: int
    arms: Arms = TINY_ARMS
    kinds: str | None = KINDS
    """Factbook question kinds trained and tested (None: every single-hop kind)."""
    seeds: tuple[int, ...] = (0,)
    env: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(TINY_ENV))
    """Episode settings, the same in training and at test time."""
    max_new_tokens: int = 32
    dev_selected: bool = False
    """Evaluate each RL run at its checkpoint with the best dev EM (logged during training)."""
    sft_source: str = "oracle"
    """SmolLM2: the start's demonstrations (``--sft-source``)."""
    sft_eval_every: int = 0
    """SmolLM2: the start's dev-evaluation (and kept-checkpoint) interval; 0: none."""
    razor_sft_steps: int = 2
    """RL's Razor: steps of SFT continued from the start (``sft-more``), to reach GRPO's EM."""
    razor_every: int = 1
    """sft-more's checkpoint and dev-evaluation interval (every checkpoint is kept)."""
    razor_questions: int = 4
    """Items per razor measure: dev questions, SotU questions, held-out passages."""
    arm_fields: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Per RL arm, ``TrainConfig`` fields that differ from the scale's recipe (tuned on dev)."""

    def run_name(self, arm: str, seed: int) -> str:
        """The run folder of ``arm`` with ``seed``: the arm itself at a one-seed scale."""
        return arm if len(self.seeds) == 1 else f"{arm}_s{seed}"

    def run_names(self, arms: tuple[str, ...] | list[str]) -> list[str]:
        """Every seed's run of every arm, arm by arm."""
        return [self.run_name(arm, seed) for arm in arms for seed in self.seeds]


FULL = Scale("full", "tiny", 240, 120, 16, 16, 3e-4, 16, 64, None, None, 32)
QUICK = Scale("quick", "tiny", 0, 2, 1, 4, 3e-4, 3, 4, 6, 12, 8, max_new_tokens=16)
SMOLLM2 = Scale(
    "smollm2",
    "smollm2-135m",
    base_sft_steps=0,
    sft_steps=48,
    rl_steps=100,
    rl_episodes=16,
    rl_lr=2e-5,
    passk_questions=150,
    passk_samples=32,
    eval_questions=None,
    probe_questions=None,
    num_envs=16,
    arms=SMOLLM2_ARMS,
    kinds=None,
    seeds=(0, 1),
    env=dict(SMOLLM2_ENV),
    dev_selected=True,
    sft_source="oracle-titled",
    sft_eval_every=12,
    razor_sft_steps=48,
    razor_every=12,
    razor_questions=100,
    arm_fields={"nsr": dict(NSR_CPU_FIELDS)},  # plain dicts: results.json records the scale
)
SCALES: Mapping[str, Scale] = MappingProxyType({s.name: s for s in (FULL, QUICK, SMOLLM2)})


@dataclass(frozen=True)
class Data:
    """The task the experiments run on: the factbook's kinds of the scale, or a jsonl dataset.

    ``options`` are the dataset options as given (``TrainConfig`` fields of the same names), so
    the training runs name the dataset exactly as the command line did.
    """

    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def task(self) -> str:
        """``factbook``, or ``jsonl`` when a dataset is named."""
        return "jsonl" if self.options else TASK

    def kinds(self, scale: Scale) -> str | None:
        """The question kinds trained and tested: the scale's on the factbook, all on a dataset."""
        return None if self.options else scale.kinds

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """The jsonl task's loader arguments (none for the factbook)."""
        from tasks.dataset import dataset_from_options, task_arguments

        return task_arguments(self.task, dataset_from_options(**self.options) if self.options else None)[1]

    @property
    def label(self) -> str:
        """How reports and folders name the task."""
        return str(self.task_kwargs.get("name", TASK))

    def train_fields(self, scale: Scale) -> dict[str, Any]:
        """``TrainConfig`` fields that select the task and its kinds."""
        return {"task": self.task, "kinds": self.kinds(scale), **self.options}


FACTBOOK = Data()


def _episode_fields(scale: Scale) -> dict[str, Any]:
    return {**scale.env, "max_new_tokens": scale.max_new_tokens}


def sft_configs(scale: Scale, runs: Path, data: Data = FACTBOOK) -> tuple[TrainConfig | None, TrainConfig]:
    """The SFT start's runs: (base SFT or None, the start the RL arms begin from).

    Tiny: the base trains on every single-hop kind, the start continues on the scale's kinds
    (the quick scale has no base and starts from the untrained model). SmolLM2: one SFT run of
    the short-episode recipe on every single-hop question.
    """
    if scale.model != "tiny":  # the recipe's own generation budget (demonstrations are not sampled)
        fields = {**data.train_fields(scale), **scale.env, "sft_source": scale.sft_source}
        if scale.sft_eval_every:
            every = scale.sft_eval_every
            fields |= {"eval_every": every, "eval_episodes": 64, "save_every": every}
            fields["keep_last"] = scale.sft_steps // every + 1
        return None, recipes.smollm2_cpu_sft(runs / "sft", steps=scale.sft_steps, **fields)
    fields = {**data.train_fields(scale), **_episode_fields(scale)}
    base = None
    if scale.base_sft_steps:
        base = recipes.tiny_sft(
            runs / "sft-base", steps=scale.base_sft_steps, warmup_steps=0, **{**fields, "kinds": None}
        )
    start = recipes.tiny_sft(
        runs / "sft",
        steps=scale.sft_steps,
        lr=1e-3,
        lr_schedule="constant",
        warmup_steps=0,
        init=base.out if base else None,
        **fields,
    )
    return base, start


def rl_config(arm: str, scale: Scale, runs: Path, data: Data = FACTBOOK, seed: int = 0) -> TrainConfig:
    """The RL run of ``arm`` (a name of ``RL_RUNS``) with ``seed``, from the SFT start."""
    spec = RL_RUNS[arm]
    out, start = runs / scale.run_name(arm, seed), runs / "sft"
    fields = {**data.train_fields(scale), "reward_preset": spec.preset, **dict(spec.fields)}
    fields |= scale.arm_fields.get(arm, {})
    if scale.model != "tiny":
        return recipes.smollm2_cpu_rl(out, spec.algo, start, steps=scale.rl_steps, seed=seed, **fields)
    return recipes.tiny_rl(
        out,
        spec.algo,
        start,
        steps=scale.rl_steps,
        **{"lr": scale.rl_lr, **fields},
        episodes_per_step=scale.rl_episodes,
        seed=seed,
        **_episode_fields(scale),
    )


def varied_sft_config(scale: Scale, runs: Path, data: Data = FACTBOOK) -> TrainConfig:
    """``sft-varied``: the SFT start's recipe on demonstrations with varied first queries.

    The "SFT expands" half of the diversity question: the same budget from the same model as
    the start, imitating an oracle whose queries vary (``--sft-source oracle-varied``).
    """
    _, start = sft_configs(scale, runs, data)
    return dataclasses.replace(start, out=str(runs / "sft-varied"), sft_source="oracle-varied")


def razor_sft_config(scale: Scale, runs: Path, data: Data = FACTBOOK) -> TrainConfig:
    """``sft-more``: the SFT start's recipe continued from it on freshly ordered demonstrations.

    Seed 1 draws the demonstrations in another order than the start's; every checkpoint is kept
    and evaluated on dev, so that one can be matched to GRPO's new-task EM.
    """
    _, start = sft_configs(scale, runs, data)
    steps, every = scale.razor_sft_steps, scale.razor_every
    return dataclasses.replace(
        start,
        out=str(runs / "sft-more"),
        init=str(runs / "sft"),
        steps=steps,
        seed=1,
        warmup_steps=0,
        save_every=every,
        eval_every=every,
        eval_episodes=scale.razor_questions,
        keep_last=steps // every + 1,
    )


def env_kwargs(scale: Scale, preset: str, data: Data = FACTBOOK) -> dict[str, Any]:
    """The test env of the trained policies: single-hop questions of the kinds, the trained episodes."""
    kwargs: dict[str, Any] = {"reward_preset": preset, "hops": 1, "backend": "bm25s", **scale.env}
    kinds = data.kinds(scale)
    if kinds:
        kwargs["kinds"] = kinds.split(",")
    return kwargs
