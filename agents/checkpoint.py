"""Atomic training checkpoints and a resumable metrics log.

A run folder looks like::

    runs/NAME/
      config.json                 the TrainConfig of the first start
      metrics.jsonl               one JSON line per optimizer step
      checkpoints/
        step-00000020/            complete checkpoints only (see below)
          state.json              step, config, base model, what else is present
          model/                  save_pretrained folder (weights + tokenizer), or
          adapter/                a peft LoRA adapter, on top of ``state.json["base_model"]``
          value_head.pt           PPO only
          optimizer.pt, scheduler.pt, rng.pt

A checkpoint is written into a hidden temp folder next to its final place, every file is
fsynced, then the folder is renamed (atomic on POSIX) and the parent folder fsynced. A run
killed at any moment therefore leaves either a complete checkpoint or a ``.tmp-*`` folder that
the next start deletes; ``latest_checkpoint`` only ever sees complete ones. Older checkpoints
beyond ``keep_last`` are deleted after the new one is in place.

The metrics log is flushed and fsynced after every line. On resume it is cut back to the lines
whose step is at most the checkpoint's step (a torn last line is dropped too), so after any
number of kills and resumes every step appears exactly once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tasks.storage import atomic_directory, atomic_write_json, atomic_write_lines

__all__ = [
    "CHECKPOINTS_FOLDER",
    "STATE_FILE",
    "DevChoice",
    "MetricsLog",
    "atomic_write_json",
    "checkpoint_name",
    "dev_evaluations",
    "dev_selected_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "read_metrics",
    "read_state",
    "remove_partial_checkpoints",
    "restore_rng_state",
    "rng_state",
    "truncate_metrics",
    "write_checkpoint",
]

CHECKPOINTS_FOLDER = "checkpoints"
STATE_FILE = "state.json"
_PREFIX = "step-"
_TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint taken after ``step`` steps.

    >>> checkpoint_name(42)
    'step-00000042'
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return f"{_PREFIX}{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, path)``, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith(_PREFIX) and (child / STATE_FILE).is_file():
            try:
                found.append((int(child.name[len(_PREFIX) :]), child))
            except ValueError:
                continue
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The most recent complete checkpoint of a run, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][1] if checkpoints else None


@dataclass(frozen=True)
class DevChoice:
    """The checkpoint of a run that scored best on the dev evaluations made during training."""

    step: int
    path: Path
    dev_em: float
    scores: tuple[tuple[int, float], ...]
    """(checkpoint step, dev EM) of every checkpoint that competed, oldest first."""


def dev_evaluations(run_dir: str | os.PathLike[str], metric: str = "eval_em") -> dict[int, float]:
    """The dev ``metric`` logged during training, by the step count of the weights it scored.

    The metrics line of step ``s`` (0-based) carries the evaluation of the weights after
    ``s + 1`` steps, which checkpoint ``step-(s+1)`` holds when one was kept.

    Raises:
        FileNotFoundError: the run has no metrics log.
    """
    metrics_path = Path(run_dir) / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl to choose a checkpoint on dev by")
    return {
        int(record["step"]) + 1: float(record[metric])
        for record in read_metrics(metrics_path)
        if isinstance(record.get(metric), int | float)
    }


def dev_selected_checkpoint(run_dir: str | os.PathLike[str], metric: str = "eval_em") -> DevChoice:
    """The complete checkpoint with the highest dev ``metric``; the earliest of equal ones.

    Only checkpoints that exist and were evaluated (``dev_evaluations``) compete, so the test
    split never enters the choice.

    Raises:
        FileNotFoundError: the run has no metrics log, or none of its checkpoints was evaluated.
    """
    evaluated = dev_evaluations(run_dir, metric)
    scores = tuple((step, evaluated[step]) for step, _ in list_checkpoints(run_dir) if step in evaluated)
    if not scores:
        raise FileNotFoundError(
            f"{run_dir}: none of its checkpoints has a dev evaluation ({metric!r} in metrics.jsonl); "
            "train with --eval-every equal to --save-every, or name a checkpoint folder instead"
        )
    best_step, best = max(scores, key=lambda item: (item[1], -item[0]))
    return DevChoice(best_step, Path(run_dir) / CHECKPOINTS_FOLDER / checkpoint_name(best_step), best, scores)


def remove_partial_checkpoints(run_dir: str | os.PathLike[str]) -> int:
    """Delete temp folders a killed save left behind; return how many."""
    folder = Path(run_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return 0
    partial = [child for child in folder.iterdir() if child.name.startswith(_TMP_PREFIX)]
    for child in partial:
        shutil.rmtree(child, ignore_errors=True)
    return len(partial)


def write_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    write_contents: Callable[[Path], None],
    state: Mapping[str, Any],
    keep_last: int = 2,
) -> Path:
    """Atomically create ``checkpoints/step-NNNNNNNN`` and prune older ones.

    ``write_contents(folder)`` fills a temp folder; ``state`` (JSON-serializable, must not hold
    the key ``step``) is written last as ``state.json``, the marker of a complete checkpoint.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    if "step" in state:
        raise ValueError("state must not carry 'step': write_checkpoint records it")
    final = Path(run_dir) / CHECKPOINTS_FOLDER / checkpoint_name(step)
    # A re-save of the same step (e.g. the final save after a resume) replaces the old folder.
    with atomic_directory(final, replace=True) as folder:
        write_contents(folder)
        atomic_write_json(folder / STATE_FILE, {"step": step, **state})
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint folder, with a clear error for anything else."""
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no {STATE_FILE})")
    return json.loads(path.read_text())


# --- random number generator states ---------------------------------------------------------


def rng_state(numpy_generator: np.random.Generator) -> dict[str, Any]:
    """Every RNG a run touches: torch's (CPU and CUDA) generators, one numpy Generator, Python's random.

    Only tensors, ints, strings and tuples, so ``torch.load(..., weights_only=True)`` reads it back.
    """
    import torch

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_generator.bit_generator.state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], numpy_generator: np.random.Generator) -> None:
    """Put back the RNG states ``rng_state`` saved (torch, the numpy generator, Python)."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_generator.bit_generator.state = state["numpy"]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --- metrics log -----------------------------------------------------------------------------


def truncate_metrics(path: str | os.PathLike[str], last_step: int) -> int:
    """Keep only complete lines with ``step <= last_step``; return how many lines were kept."""
    target = Path(path)
    if not target.exists():
        return 0
    kept = []
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if isinstance(record, dict) and int(record.get("step", -1)) <= last_step:
            kept.append(line)
    atomic_write_lines(target, kept)
    return len(kept)


class MetricsLog:
    """Append-only JSONL, one line per step, flushed and fsynced after each line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (it must carry its ``step``) and make it durable."""
        if "step" not in record:
            raise ValueError("every metrics record needs a 'step'")
        self._handle.write(json.dumps(dict(record), sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete records of a metrics log."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
