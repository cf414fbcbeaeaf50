"""What the experiments share: training the arms, evaluating them, statistics and outputs.

Training: the arms are the scale's ``benchmarks.recipes`` configs (``scales``), run as
``python -m agents.train --resume`` subprocesses (at most ``jobs`` at a time): a run folder that
holds its last checkpoint is reused, and a run stopped half-way continues from its latest
checkpoint, so a campaign can span sessions. Evaluation: ``benchmarks.evaluation`` plays and
caches the episodes under ``<runs>/samples/<purpose>/``, one file per policy; at a
dev-selected scale each RL run is evaluated at its checkpoint with the best dev EM.
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
from benchmarks.experiments.scales import FACTBOOK, FULL, Data, Scale, env_kwargs, rl_config, sft_configs
from tasks.storage import atomic_write_json, atomic_write_text

HELPER_SFT = "runs/bench_learning/sft"  # the learning benchmark's tiny SFT run, reused when complete
Row = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------- training


def finished(run: Path, steps: int) -> bool:
    """True when ``run`` holds a complete checkpoint at ``steps`` or later."""
    from agents import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(run) if run.is_dir() else None
    return latest is not None and int(ckpt.read_state(latest)["step"]) >= steps


def run_trainings(configs: Sequence[TrainConfig], max_parallel: int) -> dict[str, float]:
    """Train ``configs`` as ``agents.train --resume`` processes, ``max_parallel`` at a time.

    Finished runs are skipped, and a run with checkpoints short of its last step resumes from
    the latest; each process logs to ``<run>.log``. Returns the wall seconds of each run (0 for
    a reused one).

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
            log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 (closed with the process)
            argv = [sys.executable, "-m", "agents.train", *recipes.train_argv(cfg), "--resume"]
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

    def train(self, arms: Sequence[str]) -> dict[str, Any]:
        """The SFT start, then every seed's run of the named RL arms; commands and wall times."""
        sft = ensure_sft_start(self.scale, self.runs, self.jobs, self.data)
        configs = {
            self.scale.run_name(arm, seed): rl_config(arm, self.scale, self.runs, self.data, seed)
            for arm in arms
            for seed in self.scale.seeds
        }
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
        """Each named run as an agent labelled by its name.

        An SFT run (``sft...``) at its last checkpoint; an RL run at its dev-chosen checkpoint
        where the scale says so, else at its latest.
        """
        from agents.weights import resolve_checkpoint
        from benchmarks.evaluation import DEV_SUFFIX, resolve_agent

        def source(name: str) -> str:
            run = self.runs / name
            rl = not name.startswith("sft")  # sft, sft-varied, sft-more: SFT runs, no dev choice
            return f"{run}{DEV_SUFFIX}" if self.scale.dev_selected and rl else str(resolve_checkpoint(run))

        return [resolve_agent(f"{name}={source(name)}") for name in names]

    def pooled(self, rows: Mapping[str, list[dict]], arms: Sequence[str]) -> dict[str, list[dict]]:
        """The rows of each arm over all its seeds' runs (``sft`` as itself).

        Per-question figures then average a question's episodes over the seeds, so an interval
        over questions counts each question once with the seeds' mean.
        """
        pooled = {"sft": rows["sft"]} if "sft" in rows else {}
        for arm in arms:
            pooled[arm] = [row for seed in self.scale.seeds for row in rows[self.scale.run_name(arm, seed)]]
        return pooled

    def greedy_rows(self, names: Sequence[str], preset: str = "rezero") -> dict[str, list[dict]]:
        """Greedy episodes of each named run on the evaluation questions (reward under ``preset``)."""
        config = self.test_config(self.scale.eval_questions, 1, preset, greedy=True)
        return self.rows("greedy", self.checkpoints(names), config)

    def sampled_rows(self, names: Sequence[str]) -> dict[str, list[dict]]:
        """``passk_samples`` sampled (T = 1) episodes per question of each policy (``rezero-strict``)."""
        config = self.test_config(self.scale.passk_questions, self.scale.passk_samples, "rezero-strict")
        return self.rows("passk", self.checkpoints(names), config)

    def test_config(
        self, questions: int | None, samples: int, preset: str, greedy: bool = False
    ) -> RunConfig:
        """Episodes of the trained policies on the single-hop test questions of the kinds, seed 0."""
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
    """EM, searches/episode, repeated-query rate, retry after a failed search and reward.

    EM, searches and reward with intervals over questions.
    """
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
        "retry_after_failed_search": retry_after_failed_search(rows),
    }


def retry_after_failed_search(rows: Sequence[Row]) -> float | None:
    """The share of episodes with a failed search (no gold passage in its hits) that searched again.

    None when no episode had one, or for rows played before episodes kept their ``stats``.
    """
    from searchenv.metrics import EpisodeStats, summarize_episode_stats

    if not rows or any("stats" not in r for r in rows):
        return None
    value = summarize_episode_stats([EpisodeStats(**r["stats"]) for r in rows])["retry_after_failed_search"]
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------- outputs


def scale_note(ctx: Context, questions: int, extra: str = "") -> str:
    """The sentence every report opens with: model, questions, budgets, seeds and parallelism."""
    s = ctx.scale
    seeds = (
        f"seeds {', '.join(map(str, s.seeds))}" if len(s.seeds) > 1 else f"seed {s.seeds[0]}, one seed only"
    )
    if s.model == "tiny":
        model = "tiny Llama (~5M parameters, from scratch)"
        start = (
            f"SFT start = {s.base_sft_steps} SFT steps on all single-hop kinds + {s.sft_steps} steps on "
            "those kinds (batch 8)"
        )
        rl = f"lr {s.rl_lr}"
    else:
        model = f"{s.model} (fp32, one torch thread per run)"
        start = f"SFT start = {s.sft_steps} steps of 8 oracle demonstrations (recipes.smollm2_cpu_sft)"
        rl = "the top 4 layers on trunk states, lr 2e-5, no KL (recipes.smollm2_cpu_rl)"
        rl += ", checkpoint chosen on dev EM"
    env = ", ".join(f"{k} {v}" for k, v in s.env.items())
    return (
        f"Scale ({s.name}): {model}, single-hop {ctx.data.label} questions of kinds "
        f"{ctx.data.kinds(s) or 'all'}; "
        f"{start}; each RL run {s.rl_steps} steps x {s.rl_episodes} episodes, {rl}, {seeds}; "
        f"{questions} test questions{extra}; {env}; {ctx.jobs} process(es) at a time x 1 torch thread."
    )


def payload(ctx: Context, started: float, figures: Mapping[str, Any]) -> dict[str, Any]:
    """``results.json``: the scale and kinds, the experiment's figures, its wall time and machine.

    The machine is the one this command ran on (its evaluations); each training run records
    its own in its ``machine.jsonl``.
    """
    import torch

    from agents.device import machine_description

    return {
        "scale": dataclasses.asdict(ctx.scale),
        "task": ctx.data.label,
        "kinds": ctx.data.kinds(ctx.scale),
        **figures,
        "wall_seconds": time.perf_counter() - started,
        "machine": machine_description(torch.device("cpu")),
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
