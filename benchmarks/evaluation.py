"""The evaluation engine of every benchmark: play agents, keep per-episode rows, summarize them.

One *evaluation* is one agent on one task under one :class:`RunConfig`: each chosen question is
played ``samples_per_question`` times per seed through ``agents.rollout.run_episodes`` and every
episode becomes a row (answer scores, reward and its components, behaviour counts, queries,
answer, generated tokens). An evaluation is kept in one file, ``<label>__<task>.json`` in the
caller's folder, written atomically as soon as it finishes and keyed by a hash of everything
that changes its episodes; an evaluation asked for again with the same key is read back
instead of played again, and a damaged or stale file is replayed.

Figures are computed from the rows alone: per-question means, and the intervals of
``searchenv.metrics`` over them. Intervals resample *questions* (the samples of one question
are not independent): each question contributes the mean over its samples.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.evaluation_stats import correct_matrix as correct_matrix
from benchmarks.evaluation_stats import interval as interval
from benchmarks.evaluation_stats import paired_difference as paired_difference
from benchmarks.evaluation_stats import pass_at_k_intervals as pass_at_k_intervals
from benchmarks.evaluation_stats import per_question as per_question
from searchenv.metrics import (
    answer_scores,
    episode_stats,
)
from tasks.storage import atomic_write_text

# Bump when the per-episode rows change shape: older evaluation files are then replayed.
ROW_SCHEMA = 2
SAMPLE_ORDERS = ("sweep", "grouped")
_LABEL_PATTERN = re.compile(r"[^A-Za-z0-9._-]+")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class AgentSpec:
    """An agent as named on a command line: a scripted policy or a checkpoint."""

    label: str
    kind: str  # "scripted", "checkpoint", or an LM baseline: "direct" or "rag" (agents.baselines)
    source: str  # the scripted name or the checkpoint path
    fingerprint: str = ""  # for checkpoints: size and mtime of its files, so a new save is redone


@dataclass(frozen=True)
class RunConfig:
    """Everything that changes the episodes played (and so keys the evaluation files)."""

    split: str = "test"
    seeds: tuple[int, ...] = (0,)
    samples_per_question: int = 1
    max_questions: int | None = None
    num_envs: int = 8
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Decoding of checkpoint policies (scripted agents ignore it, and their keys omit it).
    greedy: bool = True
    temperature: float = 1.0
    # Where checkpoint policies run: auto (CUDA when there is a GPU), cpu or cuda.
    device: str = "auto"
    # "sweep" plays every question once, then again; "grouped" plays a question's samples back
    # to back. The order changes which samples a sampling policy draws, and the experiments'
    # published samples were grouped.
    sample_order: str = "sweep"
    # Seed of the max_questions subset; the learning benchmark's probe draws its own.
    question_seed: int = 0
    # Play on this many Ray actors (agents.distributed); 0: in this process. Deterministic agents
    # play the same episodes either way; sampling ones draw per-chunk seeds, so it keys the files.
    ray_actors: int = 0

    def __post_init__(self) -> None:
        if self.sample_order not in SAMPLE_ORDERS:
            raise ValueError(f"sample_order must be one of {SAMPLE_ORDERS}, got {self.sample_order!r}")


@dataclass(frozen=True)
class Evaluation:
    """One agent on one task under one configuration, kept in ``folder``."""

    agent: AgentSpec
    task: str
    config: RunConfig
    folder: Path

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """The task's loader arguments (a jsonl dataset's files), from the env arguments."""
        return dict(self.config.env_kwargs.get("task_kwargs") or {})

    @property
    def task_label(self) -> str:
        """The task as tables and file names show it: a jsonl dataset by its name."""
        return str(self.task_kwargs.get("name", self.task))

    @property
    def path(self) -> Path:
        """The evaluation's file: ``<folder>/<label>__<task label>.json``."""
        return self.folder / f"{self.agent.label}__{_LABEL_PATTERN.sub('_', self.task_label)}.json"

    @property
    def key(self) -> str:
        """Hash of the row schema, the agent, the task and the settings that change the episodes."""
        settings = asdict(self.config)
        if self.agent.kind == "scripted":
            del settings["greedy"], settings["temperature"], settings["device"]
        if not settings["ray_actors"]:
            del settings["ray_actors"]  # in-process runs keep the keys they had before Ray
        if self.task_kwargs:
            from tasks.dataset import content_fingerprint

            # The files' content, not their paths: edited data is replayed, moved data is not.
            env = dict(settings["env_kwargs"])
            env["task_kwargs"] = content_fingerprint(self.task_kwargs)
            settings["env_kwargs"] = env
        payload = {"schema": ROW_SCHEMA, "agent": asdict(self.agent), "task": self.task, "config": settings}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- agents


def _checkpoint_fingerprint(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{stat.st_size}:".encode())
        digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def _path_label(path: Path) -> str:
    """A folder's default label: its last two parts; a checkpoint's, its run and step.

    >>> _path_label(Path("runs/grpo_s1/checkpoints/step-00000050"))
    'grpo_s1_step-00000050'
    >>> _path_label(Path("runs/sft"))
    'runs_sft'
    """
    parts = path.resolve().parts
    if len(parts) >= 3 and parts[-2] == "checkpoints":
        return f"{parts[-3]}_{parts[-1]}"
    return "_".join(parts[-2:])


DEV_SUFFIX = "@dev"  # RUN@dev: the run's dev-chosen checkpoint (agents.checkpoint.dev_selected_checkpoint)
BASELINE_KINDS = ("direct", "rag")  # agents.baselines; kept here so naming one imports no torch
BASELINE_MODELS = ("tiny", "smollm2-135m")  # agents.lm.models' names; any model or checkpoint folder too


def resolve_agent(argument: str) -> AgentSpec:
    """An agent argument as an :class:`AgentSpec`.

    ``NAME`` is a scripted policy; ``PATH`` or ``LABEL=PATH`` a checkpoint; ``RUN@dev`` (or
    ``LABEL=RUN@dev``) the run's checkpoint with the best dev EM during training, labelled
    ``<run>_dev`` by default; ``direct=MODEL`` or ``rag=MODEL`` an LM baseline
    (``agents.baselines``; MODEL is a model name, a model folder or a checkpoint), labelled
    ``direct_<model>``.

    Raises:
        FileNotFoundError: ``argument`` is neither a scripted policy nor an existing path, a
            baseline's model is neither a known model name nor an existing path, or a ``@dev``
            run has no evaluated checkpoint.
    """
    label, _, source = argument.rpartition("=") if "=" in argument else ("", "", argument)
    if source.endswith(DEV_SUFFIX):
        from agents.checkpoint import dev_selected_checkpoint

        run = Path(source.removesuffix(DEV_SUFFIX))
        label, source = label or f"{run.name}_dev", str(dev_selected_checkpoint(run).path)
    path = Path(source)
    if label in BASELINE_KINDS:
        if not path.exists() and source not in BASELINE_MODELS:
            raise FileNotFoundError(
                f"agent {argument!r}: the {label} baseline's model {source!r} is neither one of "
                f"{list(BASELINE_MODELS)} nor an existing model or checkpoint folder"
            )
        model = _path_label(path) if path.exists() else source
        fingerprint = _checkpoint_fingerprint(path) if path.exists() else ""
        return AgentSpec(_LABEL_PATTERN.sub("_", f"{label}_{model}"), label, source, fingerprint)
    if path.exists():
        label = label or _path_label(path)
        return AgentSpec(
            _LABEL_PATTERN.sub("_", label), "checkpoint", str(path), _checkpoint_fingerprint(path)
        )
    from agents.scripted import SCRIPTED_POLICIES

    if source not in SCRIPTED_POLICIES:
        raise FileNotFoundError(
            f"agent {argument!r} is neither a scripted policy {sorted(SCRIPTED_POLICIES)} nor a path"
        )
    return AgentSpec(_LABEL_PATTERN.sub("_", label or source), "scripted", source)


def load_agent(
    spec: AgentSpec,
    task: str,
    seed: int,
    greedy: bool = True,
    temperature: float = 1.0,
    device: str = "auto",
    task_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Build the policy. Checkpoints import the trainers lazily so scripted runs need no torch.

    ``task_kwargs`` (a jsonl dataset's files) reach the policies that know the task (the oracle).
    """
    if spec.kind == "scripted":
        from agents.scripted import make_policy
        from searchenv.resources import shared_task

        return make_policy(spec.source, task=shared_task(task, **dict(task_kwargs or {})), seed=seed)
    if spec.kind in BASELINE_KINDS:
        from agents.baselines import load_baseline

        return load_baseline(
            spec.kind, spec.source, greedy=greedy, temperature=temperature, seed=seed, device=device
        )
    try:
        from agents.weights import load_policy
    except ImportError as error:
        raise ImportError(
            f"loading checkpoint {spec.source!r} needs the agents extra: pip install -e .[agents] ({error})"
        ) from error
    return load_policy(spec.source, greedy=greedy, temperature=temperature, seed=seed, device=device)


# ---------------------------------------------------------------------------------------------- playing


def question_ids_for(task: str, config: RunConfig) -> list[str]:
    """The split's question ids under the env's own filters, in split order.

    ``max_questions`` keeps a fixed random subset, the same for every agent and seed: a prefix
    of the split would over-represent whatever the split happens to list first.
    """
    from searchenv.questions import sample_question_ids, select_questions

    env = config.env_kwargs
    questions = select_questions(
        task, config.split, hops=env.get("hops"), kinds=env.get("kinds"), task_kwargs=env.get("task_kwargs")
    )
    return sample_question_ids(questions, config.max_questions, seed=config.question_seed)


def planned_episodes(question_ids: Sequence[str], config: RunConfig) -> list[tuple[str, int]]:
    """(question id, sample index) of every episode of one seed, in the order they are played."""
    samples = range(config.samples_per_question)
    if config.sample_order == "grouped":
        return [(qid, sample) for qid in question_ids for sample in samples]
    return [(qid, sample) for sample in samples for qid in question_ids]


def play_episodes(
    policy: Any,
    env_kwargs: Mapping[str, Any],
    question_ids: Sequence[str],
    seed: int,
    num_envs: int,
    progress: bool,
    ray_actors: int = 0,
) -> list[Any]:
    """One pass over ``question_ids`` (the seam tests patch to count or interrupt runs).

    With ``ray_actors > 0``, ``policy`` is a factory ``seed -> policy`` that each Ray actor calls
    per chunk of questions (``agents.distributed.run_episodes_on_ray``).
    """
    if ray_actors:
        from agents.distributed import run_episodes_on_ray

        return run_episodes_on_ray(
            policy, dict(env_kwargs), question_ids=list(question_ids), seed=seed, num_envs=num_envs,
            progress=progress, num_actors=ray_actors,
        )  # fmt: skip
    from agents.rollout import run_episodes

    return run_episodes(
        policy, dict(env_kwargs), question_ids=list(question_ids), seed=seed, num_envs=num_envs,
        progress=progress,
    )  # fmt: skip


def episode_row(result: Any, seed: int, sample: int) -> dict[str, Any]:
    """The per-episode figures kept in the evaluation file (enough to recompute every summary)."""
    record = result.record
    return {
        "qid": record.question.qid,
        "seed": seed,
        "sample": sample,
        **answer_scores(record),
        "correct": bool(result.correct),
        "reward": float(result.reward),
        "breakdown": {name: float(value) for name, value in result.breakdown.items()},
        "stats": episode_stats(record).to_dict(),
        "queries": list(record.queries),
        "answer": record.answer,
        "generated_tokens": result.generated_tokens,
        "wall_time": float(result.wall_time),
    }


def play(evaluation: Evaluation, progress: bool) -> dict[str, Any]:
    """Play every planned episode of ``evaluation``; return its record (rows and run facts)."""
    agent, task, config = evaluation.agent, evaluation.task, evaluation.config
    question_ids = question_ids_for(task, config)
    planned = planned_episodes(question_ids, config)
    env_kwargs = {"task": task, "split": config.split, **dict(config.env_kwargs)}
    rows: list[dict[str, Any]] = []
    wall_time = 0.0  # rollouts only: loading a checkpoint is not the agent's speed
    for seed in config.seeds:
        if config.ray_actors:  # built in the actors, so their start and loads count as wall time
            policy: Any = partial(
                load_agent, agent, task, greedy=config.greedy, temperature=config.temperature,
                device=config.device, task_kwargs=evaluation.task_kwargs,
            )  # fmt: skip
        else:
            policy = load_agent(
                agent, task, seed, config.greedy, config.temperature, config.device, evaluation.task_kwargs
            )
        started = time.perf_counter()
        ids = [qid for qid, _ in planned]
        results = play_episodes(policy, env_kwargs, ids, seed, config.num_envs, progress, config.ray_actors)
        wall_time += time.perf_counter() - started
        if len(results) != len(planned):
            raise RuntimeError(f"{agent.label}: expected {len(planned)} episodes, got {len(results)}")
        for (qid, sample), result in zip(planned, results, strict=True):
            if result.record.question.qid != qid:
                raise RuntimeError(
                    f"{agent.label}: episode for {qid!r} answered {result.record.question.qid!r}"
                )
            rows.append(episode_row(result, seed, sample))
    return {
        "agent": agent.label,
        "task": evaluation.task_label,
        "source": agent.source,
        "kind": agent.kind,
        "question_ids": question_ids,
        "wall_time_s": wall_time,
        "key": evaluation.key,
        "config": json.loads(json.dumps(asdict(config))),  # as read back: lists, not tuples
        "rows": rows,
    }


def load_cached(evaluation: Evaluation) -> dict[str, Any] | None:
    """The evaluation's file when it exists, parses and carries the same key; else None."""
    path = evaluation.path
    if not path.exists():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged file is replayed, never trusted
    return cached if cached.get("key") == evaluation.key else None


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Compact JSON, one episode row per line (diffable, a quarter smaller than indented)."""
    head = json.dumps({k: v for k, v in record.items() if k != "rows"})
    rows = ",\n".join(json.dumps(row, separators=(",", ":")) for row in record["rows"])
    atomic_write_text(path, f'{head[:-1]},\n"rows": [\n{rows}\n]}}\n')


def _play_in_worker(evaluation: Evaluation) -> dict[str, Any]:
    if evaluation.agent.kind != "scripted":
        import torch

        torch.set_num_threads(1)  # the workers share the machine's cores
    return play(evaluation, progress=False)


def run_evaluations(
    evaluations: Sequence[Evaluation], *, workers: int = 0, progress: bool = True
) -> list[dict[str, Any]]:
    """Records of ``evaluations`` (in order): read back when cached, else played and written.

    The missing ones play in this process (``workers=0``) or in that many worker processes with
    one torch thread each. Each file is written as soon as its evaluation finishes, so an
    interrupted call loses no finished work.
    """
    records: dict[int, dict[str, Any]] = {}
    missing = []
    for index, evaluation in enumerate(evaluations):
        cached = load_cached(evaluation)
        if cached is None:
            missing.append(index)
        else:
            records[index] = cached
            _log(evaluation, "cached")

    def keep(index: int, record: dict[str, Any]) -> None:
        write_record(evaluations[index].path, record)
        records[index] = record
        _log(evaluations[index], "ran")

    if workers and missing:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_play_in_worker, evaluations[index]): index for index in missing}
            for future in as_completed(futures):
                keep(futures[future], future.result())
    else:
        for index in missing:
            keep(index, play(evaluations[index], progress))
    return [records[index] for index in range(len(evaluations))]


def _log(evaluation: Evaluation, status: str) -> None:
    agent, task = evaluation.agent.label, evaluation.task_label
    print(f"[evaluation] {agent} on {task}: {status} ({evaluation.path})", file=sys.stderr)
