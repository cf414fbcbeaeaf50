"""What the four experiments share: scales, training the arms, evaluating them, and outputs.

Training: the arms are ``benchmarks.recipes`` tiny-model configs, run as ``python -m
agents.train`` subprocesses (at most ``jobs`` at a time); a run folder that already holds its
last checkpoint is reused. Evaluation: ``benchmarks.evaluation`` plays and caches the episodes
under ``<runs>/samples/<purpose>/``, one file per policy.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import TrainConfig
from benchmarks import recipes
from benchmarks.evaluation import AgentSpec, Evaluation, RunConfig, interval, per_question, run_evaluations
from tasks.storage import atomic_write_json, atomic_write_text

# Question kinds with a small answer vocabulary: the 5M-parameter tiny model cannot yet copy an
# entity from a passage, but it can learn which answers are plausible, so EM is not stuck at 0.
KINDS = "government_type,official_language,currency,anthem,national_symbol"
TASK = "factbook"
HELPER_SFT = "runs/bench_learning/sft"  # the learning benchmark's tiny SFT run, reused when complete
# (algo, reward preset) of every RL run; the pass@k runs share the default strict preset.
RL_RUNS: dict[str, tuple[str, str]] = {
    "ppo-rezero": ("ppo", "rezero"),
    "ppo-no-retry": ("ppo", "rezero-no-retry"),
    "ppo-strict": ("ppo", "rezero-strict"),
    "grpo": ("grpo", "rezero-strict"),
    "nsr": ("nsr", "rezero-strict"),
    "wreinforce": ("wreinforce", "rezero-strict"),
}
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Scale:
    """Budgets of one experiment run (FULL or QUICK)."""

    name: str
    base_sft_steps: int  # SFT from scratch on all single-hop kinds (skipped when HELPER_SFT is reused)
    sft_steps: int  # SFT continued on KINDS
    rl_steps: int
    rl_episodes: int
    rl_lr: float
    passk_questions: int
    passk_samples: int
    eval_questions: int | None  # greedy test questions (None: every KINDS test question)
    probe_questions: int | None  # scripted-probe test questions (None: the full test split)
    num_envs: int
    max_turns: int = 4
    snippet_chars: int = 200
    max_new_tokens: int = 32


FULL = Scale("full", 240, 120, 16, 16, 3e-4, 16, 64, None, None, 32)
QUICK = Scale("quick", 0, 2, 1, 4, 3e-4, 3, 4, 6, 12, 8, max_new_tokens=16)


# ---------------------------------------------------------------------------------------------- training


def _env(scale: Scale) -> dict[str, Any]:
    return {
        "max_turns": scale.max_turns,
        "snippet_chars": scale.snippet_chars,
        "max_new_tokens": scale.max_new_tokens,
    }


@dataclass(frozen=True)
class Data:
    """The task the experiments run on: the factbook's ``KINDS``, or a jsonl dataset (every kind).

    ``options`` are the dataset options as given (``TrainConfig`` fields of the same names), so
    the training runs name the dataset exactly as the command line did.
    """

    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def task(self) -> str:
        """``factbook``, or ``jsonl`` when a dataset is named."""
        return "jsonl" if self.options else TASK

    @property
    def kinds(self) -> str | None:
        """The question kinds trained and tested: ``KINDS`` on the factbook, all on a dataset."""
        return None if self.options else KINDS

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """The jsonl task's loader arguments (none for the factbook)."""
        from tasks.dataset import dataset_from_options, task_arguments

        return task_arguments(self.task, dataset_from_options(**self.options) if self.options else None)[1]

    @property
    def label(self) -> str:
        """How reports and folders name the task."""
        return str(self.task_kwargs.get("name", TASK))

    def train_fields(self) -> dict[str, Any]:
        """``TrainConfig`` fields that select the task and its kinds."""
        return {"task": self.task, "kinds": self.kinds, **self.options}


FACTBOOK = Data()


def sft_configs(scale: Scale, runs: Path, data: Data = FACTBOOK) -> tuple[TrainConfig | None, TrainConfig]:
    """The SFT start's two runs: base SFT, then SFT continued on the experiment's kinds.

    The base trains on every single-hop kind; the quick scale has none, and continues from the
    untrained tiny model instead.
    """
    base = None
    fields = {**data.train_fields(), **_env(scale)}
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


def rl_config(name: str, scale: Scale, runs: Path, data: Data = FACTBOOK) -> TrainConfig:
    """The RL run ``name`` of ``RL_RUNS``, from the SFT start, on the experiment's kinds."""
    algo, preset = RL_RUNS[name]
    return recipes.tiny_rl(
        runs / name,
        algo,
        runs / "sft",
        steps=scale.rl_steps,
        lr=scale.rl_lr,
        episodes_per_step=scale.rl_episodes,
        reward_preset=preset,
        **data.train_fields(),
        **_env(scale),
    )


def finished(run: Path, steps: int) -> bool:
    """True when ``run`` holds a complete checkpoint at ``steps`` or later."""
    from agents import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(run) if run.is_dir() else None
    return latest is not None and int(ckpt.read_state(latest)["step"]) >= steps


def run_trainings(configs: Sequence[TrainConfig], max_parallel: int) -> dict[str, float]:
    """Train ``configs`` as ``agents.train`` processes, ``max_parallel`` at a time.

    Finished runs are skipped; each process logs to ``<run>.log``. Returns the wall seconds of
    each run (0 for a reused one).

    Raises:
        RuntimeError: a training process failed.
    """
    pending = [cfg for cfg in configs if not finished(Path(cfg.out), cfg.steps)]
    times = {Path(cfg.out).name: 0.0 for cfg in configs}
    running: dict[subprocess.Popen[bytes], tuple[Path, float]] = {}
    while pending or running:
        while pending and len(running) < max_parallel:
            cfg = pending.pop(0)
            out = Path(cfg.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            log = open(out.parent / f"{out.name}.log", "wb")  # noqa: SIM115 (closed with the process)
            argv = [sys.executable, "-m", "agents.train", *recipes.train_argv(cfg)]
            running[subprocess.Popen(argv, stdout=log, stderr=log)] = (out, time.perf_counter())
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            out, started = running.pop(proc)
            if proc.returncode != 0:
                raise RuntimeError(f"training {out} failed (exit {proc.returncode}); see {out}.log")
            times[out.name] = time.perf_counter() - started
    return times


def ensure_sft_start(scale: Scale, runs: Path, max_parallel: int, data: Data = FACTBOOK) -> dict[str, Any]:
    """Train (or reuse) the SFT start; its commands and wall times.

    On the factbook, the full scale copies the learning benchmark's complete tiny SFT run as the
    base instead of retraining it (a copy: that path may change).
    """
    base, start = sft_configs(scale, runs, data)
    helper = Path(HELPER_SFT)
    copied = False
    reusable = base and scale is FULL and data == FACTBOOK
    if reusable and base and not finished(Path(base.out), base.steps) and finished(helper, base.steps):
        shutil.copytree(helper, base.out, dirs_exist_ok=True)
        copied = True
    times = run_trainings([base], max_parallel) if base else {}
    times |= run_trainings([start], max_parallel)
    return {
        "base": {"command": recipes.train_command(base), "copied_from": str(helper) if copied else None}
        if base
        else None,
        "start": {"command": recipes.train_command(start)},
        "wall_seconds": times,
    }


# ---------------------------------------------------------------------------------------------- context


def env_kwargs(scale: Scale, preset: str, data: Data = FACTBOOK) -> dict[str, Any]:
    """The test env of the trained policies: single-hop questions of the kinds, the trained budgets."""
    kwargs: dict[str, Any] = {
        "reward_preset": preset,
        "hops": 1,
        "backend": "bm25s",
        "max_turns": scale.max_turns,
        "top_k": 3,
        "snippet_chars": scale.snippet_chars,
    }
    if data.kinds:
        kwargs["kinds"] = data.kinds.split(",")
    return kwargs


@dataclass(frozen=True)
class Context:
    """One invocation: its scale, run cache, results root and parallelism."""

    scale: Scale
    runs: Path
    results: Path  # benchmarks/results (one folder per experiment below it)
    jobs: int
    data: Data = FACTBOOK

    def out(self, name: str) -> Path:
        """The results folder of experiment ``name`` (created)."""
        path = self.results / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def train(self, names: Sequence[str]) -> dict[str, Any]:
        """The SFT start, then the named RL runs; their commands and wall times."""
        sft = ensure_sft_start(self.scale, self.runs, self.jobs, self.data)
        configs = {name: rl_config(name, self.scale, self.runs, self.data) for name in names}
        times = run_trainings(list(configs.values()), self.jobs)
        rl = {
            name: {"command": recipes.train_command(cfg), "wall_seconds": times[Path(cfg.out).name]}
            for name, cfg in configs.items()
        }
        return {"sft": sft, "rl": rl}

    def rows(self, purpose: str, agents: Sequence[AgentSpec], config: RunConfig) -> dict[str, list[dict]]:
        """Per agent label, the rows of its episodes under ``config`` (cached per purpose)."""
        folder = self.runs / "samples" / purpose
        if self.data.task_kwargs:
            config = dataclasses.replace(
                config, env_kwargs={**config.env_kwargs, "task_kwargs": self.data.task_kwargs}
            )
        evaluations = [Evaluation(agent, self.data.task, config, folder) for agent in agents]
        records = run_evaluations(evaluations, workers=self.jobs, progress=False)
        return {e.agent.label: record["rows"] for e, record in zip(evaluations, records, strict=True)}

    def checkpoints(self, names: Sequence[str]) -> list[AgentSpec]:
        """The latest checkpoint of each named run, as an agent labelled by the run's name."""
        from agents.weights import resolve_checkpoint
        from benchmarks.evaluation import resolve_agent

        return [resolve_agent(f"{name}={resolve_checkpoint(self.runs / name)}") for name in names]

    def greedy_rows(self, names: Sequence[str]) -> dict[str, list[dict]]:
        """Greedy episodes of each policy on the evaluation questions (reward under ``rezero``)."""
        config = self.test_config(self.scale.eval_questions, 1, "rezero", greedy=True)
        return self.rows("greedy", self.checkpoints(names), config)

    def sampled_rows(self, names: Sequence[str]) -> dict[str, list[dict]]:
        """``passk_samples`` sampled (T = 1) episodes per question of each policy (``rezero-strict``)."""
        config = self.test_config(self.scale.passk_questions, self.scale.passk_samples, "rezero-strict")
        return self.rows("passk", self.checkpoints(names), config)

    def test_config(
        self, questions: int | None, samples: int, preset: str, greedy: bool = False
    ) -> RunConfig:
        """Episodes of the trained policies on single-hop ``KINDS`` test questions, seed 0."""
        return RunConfig(
            split="test",
            samples_per_question=samples,
            max_questions=questions,
            num_envs=self.scale.num_envs,
            env_kwargs=env_kwargs(self.scale, preset, self.data),
            greedy=greedy,
            sample_order="grouped",
        )


# ---------------------------------------------------------------------------------------------- statistics


def repeated_searches(queries: Sequence[str]) -> int:
    """Searches that repeat an earlier (normalized) query of the same episode.

    >>> repeated_searches(["capital of France", "Capital of  France!", "France flag"])
    1
    """
    from searchenv.rewards import query_key

    seen: set[str] = set()
    repeats = 0
    for query in queries:
        key = query_key(query)
        repeats += key in seen
        seen.add(key)
    return repeats


def repeat_share(row: Row) -> float:
    """The share of an episode's searches that repeat an earlier query (0 without searches)."""
    searches = len(row["queries"])
    return repeated_searches(row["queries"]) / searches if searches else 0.0


def behaviour(rows: Sequence[Row]) -> dict[str, Any]:
    """EM, searches/episode, repeated-query rate and reward, with intervals over questions."""
    searches = sum(len(r["queries"]) for r in rows)
    repeats = sum(repeated_searches(r["queries"]) for r in rows)

    def over_questions(value: Any) -> dict[str, float]:
        return interval(list(per_question(rows, value).values()))

    return {
        "n_questions": len({r["qid"] for r in rows}),
        "n_episodes": len(rows),
        "em": over_questions("correct"),
        "searches_per_episode": over_questions(lambda r: len(r["queries"])),
        "repeated_query_rate": repeats / searches if searches else None,
        "repeated_query_rate_per_question": over_questions(repeat_share),
        "reward": over_questions("reward"),
        "retry_component": float(np.mean([r["breakdown"].get("retry", 0.0) for r in rows])),
    }


# ---------------------------------------------------------------------------------------------- outputs


def scale_note(ctx: Context, questions: int, extra: str = "") -> str:
    """The sentence every report opens with: model, questions, budgets and parallelism."""
    s = ctx.scale
    return (
        f"Scale ({s.name}): tiny Llama (~5M parameters, from scratch), single-hop {ctx.data.label} "
        f"questions of kinds {ctx.data.kinds or 'all'}; SFT start = {s.base_sft_steps} SFT steps on all "
        f"single-hop kinds + {s.sft_steps} "
        f"steps on those kinds (batch 8); each RL run {s.rl_steps} steps x {s.rl_episodes} episodes, "
        f"lr {s.rl_lr}, seed 0, one seed only; {questions} test questions{extra}; max_turns {s.max_turns}, "
        f"top_k 3, {ctx.jobs} process(es) at a time x 1 torch thread."
    )


def payload(ctx: Context, started: float, figures: Mapping[str, Any]) -> dict[str, Any]:
    """``results.json``: the scale and kinds, the experiment's figures, and its wall time."""
    return {
        "scale": dataclasses.asdict(ctx.scale),
        "task": ctx.data.label,
        "kinds": ctx.data.kinds,
        **figures,
        "wall_seconds": time.perf_counter() - started,
    }


def write_outputs(out: Path, results: Mapping[str, Any], markdown: Sequence[str]) -> None:
    """``results.json`` and ``results.md`` in ``out``; the Markdown is printed too."""
    atomic_write_json(out / "results.json", results, sort_keys=False)
    atomic_write_text(out / "results.md", "\n".join(markdown) + "\n")
    print("\n".join(markdown))


def copy_metrics(runs: Path, names: Sequence[str], out: Path) -> None:
    """Copy each run's ``metrics.jsonl`` next to the results, so their figures can be redrawn."""
    for name in names:
        source = runs / name / "metrics.jsonl"
        if source.is_file():
            atomic_write_text(out / f"{name}_metrics.jsonl", source.read_text(encoding="utf-8"))
