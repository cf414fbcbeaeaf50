"""Train LM search agents: SFT, PPO, NSR, W-REINFORCE and GRPO behind one command.

    python -m agents.train --algo sft --model tiny --hops 1 --steps 300 --out runs/sft
    python -m agents.train --algo nsr --init runs/sft --steps 40 --out runs/nsr
    python -m agents.train --algo ppo --model smollm2-135m --lora --out runs/ppo-smol
    python -m agents.train --algo ppo --out runs/ppo --resume        # continue after a kill
    python -m agents.evaluate --checkpoint runs/sft --split test --hops 1

This file is the loop only. What a step does belongs to the algorithm (``agents.algos``, one
family per file); what every algorithm shares lives beside it:

    agents.config    TrainConfig, its CLI, per-algorithm defaults via agents.algos.resolve
    agents.learner   weights, LoRA, value head, reference, optimizer (the trainable state)
    agents.rollout   the one episode loop (sampled episodes, demonstrations, GRPO groups)
    agents.update    forward pass, micro-batch accumulation, the optimizer step
    agents.weights   checkpoints written and read back, checkpoints as policies
    agents.evaluate  greedy evaluation during training and of checkpoints

A "step" is one iteration: one batch of demonstrations for SFT, one batch of rollouts (and
``update_epochs`` passes over it) for the RL algorithms. After each step one metrics line is
written; every ``save_every`` steps an atomic checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents import checkpoint as ckpt
from agents.algos import get_algorithm, resolve
from agents.config import RESUME_OVERRIDABLE, TrainConfig, config_from_args, config_from_dict
from agents.device import machine_description, resolve_device, torch_module
from agents.evaluate import evaluate_model, quiet_transformers
from agents.learner import Run, build_learner
from agents.weights import save_checkpoint
from searchenv.cli_errors import reports_errors, user_input


def prepare_run(cfg: TrainConfig) -> tuple[TrainConfig, Path | None]:
    """Resolve --resume: the run's saved config (with the overridable fields from the CLI).

    Returns the resolved config and the checkpoint to resume from (None for a fresh start).

    Raises:
        FileExistsError: if ``out`` already holds checkpoints and --resume was not given.
    """
    out = Path(cfg.out)
    existing = ckpt.latest_checkpoint(out)
    if not cfg.resume:
        if existing is not None:
            raise FileExistsError(f"{out} already holds checkpoints: pass --resume, or choose another --out")
        return resolve(cfg), None
    ckpt.remove_partial_checkpoints(out)
    if existing is None:
        return resolve(cfg), None
    saved = config_from_dict(ckpt.read_state(existing)["config"])
    overrides = {name: getattr(cfg, name) for name in RESUME_OVERRIDABLE}
    ignored = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in (*RESUME_OVERRIDABLE, "out")
        and getattr(cfg, f.name) != f.default
        and getattr(cfg, f.name) != getattr(saved, f.name)
    ]
    if ignored:
        print(f"resume: keeping the run's saved values of {', '.join(ignored)}", file=sys.stderr)
    # The folder resumed is the one named now: a run copied or moved elsewhere keeps writing
    # there, never into the folder its saved config names.
    return resolve(dataclasses.replace(saved, **overrides, out=cfg.out)), existing


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; return the run folder."""
    torch = torch_module()
    quiet_transformers()
    cfg, resume_from = prepare_run(cfg)
    device = resolve_device(cfg.device)  # a missing GPU fails here, before anything is written
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        ckpt.atomic_write_json(out / "config.json", dataclasses.asdict(cfg))

    algorithm_class = get_algorithm(cfg.algo)
    learner = build_learner(cfg, algorithm_class, resume_from)
    rng = np.random.default_rng(cfg.seed)
    start_step, wall_offset = 0, 0.0
    metrics_path = out / "metrics.jsonl"
    if resume_from is not None:
        state = ckpt.read_state(resume_from)
        start_step, wall_offset = int(state["step"]), float(state.get("wall_time", 0.0))
        ckpt.restore_rng_state(torch.load(resume_from / "rng.pt", weights_only=True), rng)
        ckpt.truncate_metrics(metrics_path, start_step - 1)
        print(f"resuming {out} from step {start_step} ({resume_from.name})", file=sys.stderr, flush=True)
    elif metrics_path.exists():
        metrics_path.unlink()  # a run that died before its first checkpoint starts over
    # Where the steps' timings were measured: each start or resume adds a line.
    with (out / "machine.jsonl").open("a", encoding="utf-8") as machines:
        machines.write(json.dumps({"start_step": start_step, **machine_description(device)}) + "\n")

    run = Run(cfg, algorithm_class(), learner, rng)
    run.algorithm.prepare(run)
    if cfg.eval_every:
        from searchenv.questions import sample_question_ids, select_questions

        eval_questions = select_questions(
            cfg.task, cfg.eval_split, hops=cfg.hops, kinds=cfg.kind_list, task_kwargs=cfg.task_kwargs
        )
        run.eval_question_ids = sample_question_ids(eval_questions, cfg.eval_episodes, cfg.seed)

    writer = _tensorboard_writer(out) if cfg.tensorboard else None
    bar = _progress(cfg, start_step)
    started = time.perf_counter() - wall_offset
    with ckpt.MetricsLog(metrics_path) as log:
        for step in range(start_step, cfg.steps):
            step_started, cpu_started = time.perf_counter(), time.process_time()
            metrics = run.algorithm.step(run, step)
            metrics["lr"] = float(learner.scheduler.get_last_lr()[0])
            last = step + 1 == cfg.steps
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                metrics.update({f"eval_{k}": v for k, v in evaluate_model(run, step).items()})
            metrics["step_time"] = time.perf_counter() - step_started
            # CPU seconds of this process (all threads): comparable across loaded and idle machines.
            metrics["step_cpu_time"] = time.process_time() - cpu_started
            metrics["wall_time"] = time.perf_counter() - started
            log.write({"step": step, "algo": cfg.algo, **metrics})
            if writer is not None:
                for key, value in metrics.items():
                    if isinstance(value, float):
                        writer.add_scalar(f"train/{key}", value, step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(_postfix(metrics))
            if (step + 1) % cfg.save_every == 0 or last:
                save_checkpoint(run, step + 1, time.perf_counter() - started)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    return out


def _progress(cfg: TrainConfig, start_step: int) -> Any:
    """A tqdm bar over steps, or None with --no-progress."""
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start_step, desc=f"{cfg.algo} {Path(cfg.out).name}", unit="step")


def _postfix(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The few metrics worth showing on the progress bar."""
    keys = ("loss", "reward_mean", "accuracy", "kl", "eval_em")
    return {k: f"{metrics[k]:.3f}" for k in keys if k in metrics}


def _tensorboard_writer(out: Path) -> Any:
    """A TensorBoard writer under OUT/tensorboard, or an ImportError that says what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def check_inputs(cfg: TrainConfig) -> None:
    """Fail in a second, before torch loads, on what the command line names but is not there.

    The run folder (existing checkpoints need --resume), the --init checkpoint or the --model,
    the backend, the task and its training (and evaluation) split with --hops/--kinds, and a GPU
    for --device cuda. Raises what the checks raise; ``main`` reports them as usage errors.
    """
    from agents.lm.models import SMOLLM2, TINY
    from agents.weights import resolve_checkpoint
    from searchenv.cli_errors import UsageError, check_backend
    from searchenv.questions import select_questions

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a run folder: choose another --out")
    if ckpt.latest_checkpoint(out) is not None:
        if not cfg.resume:
            raise UsageError(f"{out} already holds checkpoints: pass --resume, or choose another --out")
        return  # the run's saved config is the one that trains
    if cfg.init is not None:
        resolve_checkpoint(cfg.init)
    elif cfg.model not in (TINY, SMOLLM2) and not Path(cfg.model).is_dir():
        raise UsageError(
            f"unknown model source {cfg.model!r}: use {TINY!r}, {SMOLLM2!r} or a local model folder"
        )
    check_backend(cfg.backend)
    for split in (cfg.split, cfg.eval_split) if cfg.eval_every else (cfg.split,):
        select_questions(cfg.task, split, hops=cfg.hops, kinds=cfg.kind_list, task_kwargs=cfg.task_kwargs)
    if cfg.device == "cuda":
        resolve_device(cfg.device)


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m agents.train`` entry point (``evaluate ...`` forwards to agents.evaluate)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "evaluate":
        from agents import evaluate

        return evaluate.main(args[1:])
    if args and args[0] == "train":
        args = args[1:]
    with user_input():  # a user's mistake: one line, exit 2 (searchenv.cli_errors)
        cfg = config_from_args(args)
        check_inputs(cfg)
    out = train(cfg)
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
