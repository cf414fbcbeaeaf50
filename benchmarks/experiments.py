"""The leaderboard issue's four experiments, each one command, sized for a 2-core CPU.

    python -m benchmarks.experiments persistence   # ReZero: rezero vs rezero-no-retry, same trainer
    python -m benchmarks.experiments passk         # pass@k to k=64: SFT vs PPO, GRPO, NSR, W-REINFORCE
    python -m benchmarks.experiments diversity     # query diversity across samples (reuses passk samples)
    python -m benchmarks.experiments hacking       # rezero vs rezero-strict: probes, then an RL trainer
    python -m benchmarks.experiments passk --quick # tiny budgets, about a minute, for tests

Every policy starts from one SFT checkpoint of the tiny model (see ``ensure_sft_start``); every
RL run is a plain ``python -m agents.train`` command (written to the results), run at most
``--jobs`` at a time with ``--threads`` torch threads each. Runs and sampled episodes are cached
under ``--runs`` (a rerun reuses a finished run or sample file), so ``diversity`` costs no extra
rollouts once ``passk`` has run, and ``hacking`` reuses ``persistence``'s ``rezero`` run.

Intervals are 95% percentile bootstraps over *questions* (samples of one question are not
independent); differences are paired bootstraps over the same questions.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.plots import draw_pass_at_k, style_pass_at_k_axis
from searchenv.metrics import bootstrap_ci, paired_bootstrap_diff, pass_at_k_per_question
from tasks.records import atomic_write_lines

EXPERIMENTS = ("persistence", "passk", "diversity", "hacking")
# Question kinds with a small answer vocabulary: the 5M-parameter tiny model cannot yet copy an
# entity from a passage, but it can learn which answers are plausible, so EM is not stuck at 0.
KINDS = "government_type,official_language,currency,anthem,national_symbol"
HELPER_SFT = "runs/bench_learning/sft"  # the learning benchmark's tiny SFT run, reused when complete
PROBES = ("bm25", "repeat-query", "spam-search")
# (algo, reward preset) of every RL run; the pass@k runs share the default strict preset.
RL_RUNS: dict[str, tuple[str, str]] = {
    "ppo-rezero": ("ppo", "rezero"),
    "ppo-no-retry": ("ppo", "rezero-no-retry"),
    "ppo-strict": ("ppo", "rezero-strict"),
    "grpo": ("grpo", "rezero-strict"),
    "nsr": ("nsr", "rezero-strict"),
    "wreinforce": ("wreinforce", "rezero-strict"),
}
PASSK_POLICIES = ("sft", "ppo-strict", "grpo", "nsr", "wreinforce")


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


# ---------------------------------------------------------------------------------------------
# training runs (subprocesses of agents.train)


def common_args(scale: Scale) -> list[str]:
    return [
        "--model",
        "tiny",
        "--hops",
        "1",
        "--threads",
        "1",
        "--snippet-chars",
        str(scale.snippet_chars),
        "--max-turns",
        str(scale.max_turns),
        "--max-new-tokens",
        str(scale.max_new_tokens),
        "--num-envs",
        "16",
        "--no-progress",
    ]


def sft_commands(scale: Scale, runs: Path) -> list[tuple[Path, list[str]]]:
    """The SFT start: base SFT on every single-hop kind, then SFT continued on ``KINDS``."""
    base, start = runs / "sft-base", runs / "sft"
    base_cmd = ["--algo", "sft", "--out", str(base), "--steps", str(scale.base_sft_steps), "--lr", "0.003"]
    base_cmd += [
        "--lr-schedule",
        "cosine",
        "--sft-batch-size",
        "8",
        "--save-every",
        str(scale.base_sft_steps),
    ]
    # Without base steps (the quick scale) the start is SFT on KINDS from the untrained tiny model.
    start_cmd = ["--algo", "sft", "--out", str(start), "--kinds", KINDS]
    start_cmd += ["--init", str(base)] if scale.base_sft_steps else []
    start_cmd += ["--steps", str(scale.sft_steps), "--lr", "0.001", "--lr-schedule", "constant"]
    start_cmd += ["--sft-batch-size", "8", "--save-every", str(scale.sft_steps), "--eval-every", "0"]
    return [(base, base_cmd + common_args(scale)), (start, start_cmd + common_args(scale))]


def rl_command(name: str, scale: Scale, runs: Path) -> tuple[Path, list[str]]:
    algo, preset = RL_RUNS[name]
    out = runs / name
    args = ["--algo", algo, "--init", str(runs / "sft"), "--out", str(out), "--kinds", KINDS]
    args += ["--reward-preset", preset, "--steps", str(scale.rl_steps), "--lr", str(scale.rl_lr)]
    args += ["--episodes-per-step", str(scale.rl_episodes), "--save-every", str(scale.rl_steps)]
    return out, args + common_args(scale)


def finished(run: Path, steps: int) -> bool:
    """True when ``run`` holds a complete checkpoint at ``steps`` or later."""
    from agents import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(run) if run.is_dir() else None
    return latest is not None and int(ckpt.read_state(latest)["step"]) >= steps


def run_commands(jobs: Sequence[tuple[Path, list[str], int]], max_parallel: int) -> dict[str, float]:
    """Run ``agents.train`` commands (``out``, args, steps), ``max_parallel`` at a time; skip
    finished ones. Returns wall seconds per run (0 for a reused run)."""
    pending = [job for job in jobs if not finished(job[0], job[2])]
    times = {job[0].name: 0.0 for job in jobs}
    running: dict[subprocess.Popen[bytes], tuple[Path, float]] = {}
    while pending or running:
        while pending and len(running) < max_parallel:
            out, args, _ = pending.pop(0)
            out.parent.mkdir(parents=True, exist_ok=True)
            log = open(out.parent / f"{out.name}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen([sys.executable, "-m", "agents.train", *args], stdout=log, stderr=log)
            running[proc] = (out, time.perf_counter())
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            out, started = running.pop(proc)
            if proc.returncode != 0:
                raise RuntimeError(f"training {out} failed (exit {proc.returncode}); see {out}.log")
            times[out.name] = time.perf_counter() - started
    return times


def ensure_sft_start(scale: Scale, runs: Path, max_parallel: int) -> dict[str, Any]:
    """Train (or reuse) the SFT start. The full scale copies the learning benchmark's complete
    tiny SFT run as the base instead of retraining it (a copy: that path may change)."""
    (base, base_args), (start, start_args) = sft_commands(scale, runs)
    helper = Path(HELPER_SFT)
    reused = False
    if scale is FULL and not finished(base, scale.base_sft_steps) and finished(helper, scale.base_sft_steps):
        shutil.copytree(helper, base, dirs_exist_ok=True)
        reused = True
    times = (
        run_commands([(base, base_args, scale.base_sft_steps)], max_parallel) if scale.base_sft_steps else {}
    )
    times |= run_commands([(start, start_args, scale.sft_steps)], max_parallel)
    return {
        "base": {"command": cli(base_args), "copied_from": str(helper) if reused else None}
        if scale.base_sft_steps
        else None,
        "start": {"command": cli(start_args)},
        "wall_seconds": times,
    }


def cli(args: Sequence[str]) -> str:
    return "python -m agents.train " + " ".join(args)


# ---------------------------------------------------------------------------------------------
# sampling episodes (worker processes) and per-episode rows


def test_question_ids(limit: int | None, seed: int = 0) -> list[str]:
    from agents import sft_data

    questions = sft_data.select_questions("factbook", "test", hops=1, kinds=KINDS.split(","))
    return sft_data.sample_question_ids(questions, limit, seed)


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


def episode_row(result: Any, sample: int) -> dict[str, Any]:
    queries = list(result.record.queries)
    return {
        "qid": result.question_id,
        "sample": sample,
        "correct": bool(result.correct),
        "reward": float(result.reward),
        "breakdown": dict(result.breakdown),
        "queries": queries,
        "searches": len(queries),
        "repeats": repeated_searches(queries),
        "answer": result.record.answer,
    }


def sample_rows(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Play a checkpoint or scripted policy on ``question_ids`` x ``samples`` (a worker entry point)."""
    import torch

    from agents.rollout import run_episodes

    torch.set_num_threads(1)
    ids = [qid for qid in job["question_ids"] for _ in range(job["samples"])]
    if job["kind"] == "scripted":
        from agents.scripted import make_policy

        policy = make_policy(job["source"], seed=job["seed"])
    else:
        from agents.train import load_policy

        policy = load_policy(job["source"], greedy=job["greedy"], temperature=1.0, seed=job["seed"])
    with torch.no_grad():
        results = run_episodes(
            policy, job["env"], question_ids=ids, num_envs=job["num_envs"], seed=job["seed"], progress=False
        )
    return [episode_row(r, i % job["samples"]) for i, r in enumerate(results)]


def cached_samples(
    jobs: Mapping[str, dict[str, Any]], cache: Path, max_parallel: int
) -> dict[str, list[dict]]:
    """Rows for every named job, from ``cache/<name>.jsonl`` when its job description matches."""
    rows: dict[str, list[dict]] = {}
    todo = {}
    for name, job in jobs.items():
        path = cache / f"{name.replace('/', '__')}.jsonl"
        if path.is_file():
            header, *body = path.read_text().splitlines()
            if json.loads(header) == json.loads(json.dumps(job)):
                rows[name] = [json.loads(line) for line in body]
                continue
        todo[name] = job
    if todo:
        with ProcessPoolExecutor(max_workers=max_parallel, mp_context=get_context("spawn")) as pool:
            futures = {name: pool.submit(sample_rows, job) for name, job in todo.items()}
            for name, future in futures.items():
                rows[name] = future.result()
                lines = [json.dumps(todo[name])] + [json.dumps(r) for r in rows[name]]
                atomic_write_lines(cache / f"{name.replace('/', '__')}.jsonl", lines)
    return rows


def env_kwargs(scale: Scale, preset: str, *, kinds: bool = True, max_turns: int | None = None) -> dict:
    kwargs = {"task": "factbook", "split": "test", "reward_preset": preset, "hops": 1, "backend": "bm25s"}
    kwargs |= {"max_turns": max_turns or scale.max_turns, "top_k": 3, "snippet_chars": scale.snippet_chars}
    if kinds:
        kwargs["kinds"] = KINDS.split(",")
    return kwargs


def checkpoint_job(run: Path, scale: Scale, ids: list[str], samples: int, greedy: bool, preset: str) -> dict:
    from agents.train import resolve_checkpoint

    return {
        "kind": "checkpoint",
        "source": str(resolve_checkpoint(run)),
        "greedy": greedy,
        "seed": 0,
        "samples": samples,
        "question_ids": ids,
        "env": env_kwargs(scale, preset),
        "num_envs": scale.num_envs,
    }


# ---------------------------------------------------------------------------------------------
# statistics


def per_question(rows: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]) -> dict:
    """Mean of ``value`` over each question's samples, keyed by question id (sorted)."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["qid"], []).append(float(value(row)))
    return {qid: float(np.mean(v)) for qid, v in sorted(groups.items())}


def interval(values: Sequence[float]) -> dict[str, float]:
    return bootstrap_ci(list(values), seed=0).to_dict()


def behaviour(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """EM, searches/episode, repeated-query rate and reward, with intervals over questions."""
    searches = sum(r["searches"] for r in rows)
    repeat_share = per_question(rows, lambda r: r["repeats"] / r["searches"] if r["searches"] else 0.0)
    return {
        "n_questions": len({r["qid"] for r in rows}),
        "n_episodes": len(rows),
        "em": interval(list(per_question(rows, lambda r: r["correct"]).values())),
        "searches_per_episode": interval(list(per_question(rows, lambda r: r["searches"]).values())),
        "repeated_query_rate": sum(r["repeats"] for r in rows) / searches if searches else None,
        "repeated_query_rate_per_question": interval(list(repeat_share.values())),
        "reward": interval(list(per_question(rows, lambda r: r["reward"]).values())),
        "retry_component": float(np.mean([r["breakdown"].get("retry", 0.0) for r in rows])),
    }


def paired(a: Sequence[Mapping], b: Sequence[Mapping], value: Callable[[Mapping], float]) -> dict:
    """Paired bootstrap of mean(value | a) - mean(value | b) over the questions both cover."""
    qa, qb = per_question(a, value), per_question(b, value)
    common = sorted(set(qa) & set(qb))
    return paired_bootstrap_diff([qa[q] for q in common], [qb[q] for q in common], seed=0).to_dict()


def fmt(figure: Mapping[str, Any] | float | None, digits: int = 3) -> str:
    if figure is None:
        return "n/a"
    if isinstance(figure, Mapping):
        return f"{figure['mean']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"
    return f"{figure:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def write_outputs(out: Path, name: str, payload: Mapping[str, Any], markdown: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(out / "results.json", [json.dumps(payload, indent=2, default=str)])
    atomic_write_lines(out / "results.md", markdown)
    print("\n".join(markdown))


def copy_metrics(runs: Path, names: Sequence[str], out: Path) -> None:
    for name in names:
        source = runs / name / "metrics.jsonl"
        if source.is_file():
            shutil.copyfile(source, out / f"{name}_metrics.jsonl")


def training_trend(run: Path) -> dict[str, float] | None:
    """Mean training reward and accuracy over the first and last quarter of an RL run's steps."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = [m for m in lines if "reward_mean" in m]
    if not lines:
        return None
    quarter = max(1, len(lines) // 4)
    first, last = lines[:quarter], lines[-quarter:]
    return {
        "reward_first": float(np.mean([m["reward_mean"] for m in first])),
        "reward_last": float(np.mean([m["reward_mean"] for m in last])),
        "accuracy_first": float(np.mean([m.get("accuracy", 0.0) for m in first])),
        "accuracy_last": float(np.mean([m.get("accuracy", 0.0) for m in last])),
        "steps": len(lines),
    }


def save_figure(figure: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------
# the experiments


@dataclass(frozen=True)
class Context:
    scale: Scale
    runs: Path
    results: Path  # benchmarks/results (one folder per experiment below it)
    jobs: int

    def out(self, name: str) -> Path:
        path = self.results / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def train(self, names: Sequence[str]) -> dict[str, Any]:
        """The SFT start, then the named RL runs; their commands and wall times."""
        sft = ensure_sft_start(self.scale, self.runs, self.jobs)
        commands = {name: rl_command(name, self.scale, self.runs) for name in names}
        jobs = [(out, args, self.scale.rl_steps) for out, args in commands.values()]
        times = run_commands(jobs, self.jobs)
        return {
            "sft": sft,
            "rl": {
                name: {"command": cli(args), "wall_seconds": times[out.name]}
                for name, (out, args) in commands.items()
            },
        }

    def run_path(self, name: str) -> Path:
        return self.runs / name

    def greedy_rows(self, names: Sequence[str]) -> dict[str, list[dict]]:
        """Greedy episodes of each policy on the evaluation questions (reward under ``rezero``)."""
        ids = test_question_ids(self.scale.eval_questions)
        jobs = {
            f"greedy-{n}": checkpoint_job(self.run_path(n), self.scale, ids, 1, True, "rezero") for n in names
        }
        rows = cached_samples(jobs, self.runs / "samples", self.jobs)
        return {n: rows[f"greedy-{n}"] for n in names}

    def passk_rows(self) -> dict[str, list[dict]]:
        """``passk_samples`` sampled (T = 1) episodes per question for every pass@k policy."""
        ids = test_question_ids(self.scale.passk_questions)
        jobs = {
            f"passk-{n}": checkpoint_job(
                self.run_path(n), self.scale, ids, self.scale.passk_samples, False, "rezero-strict"
            )
            for n in PASSK_POLICIES
        }
        rows = cached_samples(jobs, self.runs / "samples", self.jobs)
        return {n: rows[f"passk-{n}"] for n in PASSK_POLICIES}


def scale_note(ctx: Context, questions: int, extra: str = "") -> str:
    s = ctx.scale
    return (
        f"Scale ({s.name}): tiny Llama (~5M parameters, from scratch), single-hop factbook questions of "
        f"kinds {KINDS}; SFT start = {s.base_sft_steps} SFT steps on all single-hop kinds + {s.sft_steps} "
        f"steps on those kinds (batch 8); each RL run {s.rl_steps} steps x {s.rl_episodes} episodes, "
        f"lr {s.rl_lr}, seed 0, one seed only; {questions} test questions{extra}; max_turns {s.max_turns}, "
        f"top_k 3, {ctx.jobs} process(es) at a time x 1 torch thread."
    )


def persistence(ctx: Context) -> dict[str, Any]:
    """ReZero's claim: the retry reward raises persistence (searches) and accuracy."""
    started = time.perf_counter()
    names = ("ppo-rezero", "ppo-no-retry")
    runs = ctx.train(names)
    rows = ctx.greedy_rows(("sft", *names))
    out = ctx.out("persistence")
    copy_metrics(ctx.runs, names, out)
    figures = {n: behaviour(r) for n, r in rows.items()}
    diffs = {
        "em: ppo-rezero - ppo-no-retry": paired(
            rows["ppo-rezero"], rows["ppo-no-retry"], lambda r: r["correct"]
        ),
        "searches: ppo-rezero - ppo-no-retry": paired(
            rows["ppo-rezero"], rows["ppo-no-retry"], lambda r: r["searches"]
        ),
        **{f"em: {n} - sft": paired(rows[n], rows["sft"], lambda r: r["correct"]) for n in names},
        **{f"searches: {n} - sft": paired(rows[n], rows["sft"], lambda r: r["searches"]) for n in names},
    }
    trends = {n: training_trend(ctx.run_path(n)) for n in names}
    presets = {"sft": "-", **{n: RL_RUNS[n][1] for n in names}}
    md = [
        "# Persistence: rezero vs rezero-no-retry (same trainer, same start)",
        "",
        scale_note(ctx, figures["sft"]["n_questions"], ", greedy decoding, one episode each"),
        "",
        *table(
            [
                "policy",
                "train preset",
                "test EM",
                "searches / episode",
                "repeated-query rate",
                "train reward first -> last quarter",
            ],
            [
                [
                    n,
                    presets[n],
                    fmt(f["em"]),
                    fmt(f["searches_per_episode"], 2),
                    fmt(f["repeated_query_rate"]),
                    (
                        f"{trends[n]['reward_first']:.2f} -> {trends[n]['reward_last']:.2f}"
                        if trends.get(n)
                        else "-"
                    ),
                ]
                for n, f in figures.items()
            ],
        ),
        "",
        "Paired differences (bootstrap over questions):",
        "",
        *table(["difference", "mean [95% CI]"], [[k, fmt(v)] for k, v in diffs.items()]),
        "",
        "![persistence](persistence.png)",
    ]
    plot_bars(figures, ("em", "searches_per_episode"), out / "persistence.png", "Persistence: retry reward")
    payload = {
        "scale": dataclasses.asdict(ctx.scale),
        "kinds": KINDS,
        "runs": runs,
        "figures": figures,
        "differences": diffs,
        "training": trends,
        "wall_seconds": time.perf_counter() - started,
    }
    write_outputs(out, "persistence", payload, md)
    return payload


def passk_curves(rows: Mapping[str, Sequence[Mapping]], ks: Sequence[int]) -> dict[str, dict[int, dict]]:
    curves: dict[str, dict[int, dict]] = {}
    for name, episodes in rows.items():
        matrix = correct_matrix(episodes)
        curves[name] = {k: interval(pass_at_k_per_question(matrix, k).tolist()) for k in ks}
    return curves


def correct_matrix(rows: Sequence[Mapping]) -> np.ndarray:
    """[questions (sorted ids) x samples] booleans."""
    groups: dict[str, list[bool]] = {}
    for row in sorted(rows, key=lambda r: (r["qid"], r["sample"])):
        groups.setdefault(row["qid"], []).append(bool(row["correct"]))
    return np.array([groups[q] for q in sorted(groups)], dtype=bool)


def passk(ctx: Context) -> dict[str, Any]:
    """NSR's claim: negative-only RL keeps pass@k at large k where PPO/GRPO narrow it."""
    started = time.perf_counter()
    runs = ctx.train([n for n in PASSK_POLICIES if n != "sft"])
    rows = ctx.passk_rows()
    out = ctx.out("passk")
    copy_metrics(ctx.runs, [n for n in PASSK_POLICIES if n != "sft"], out)
    n = ctx.scale.passk_samples
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n]
    curves = passk_curves(rows, ks)
    diffs = {}
    for name in PASSK_POLICIES[1:]:
        for k in (1, ks[-1]):
            a = pass_at_k_per_question(correct_matrix(rows[name]), k)
            b = pass_at_k_per_question(correct_matrix(rows["sft"]), k)
            diffs[f"pass@{k}: {name} - sft"] = paired_bootstrap_diff(a, b, seed=0).to_dict()
    questions = len({r["qid"] for r in rows["sft"]})
    md = [
        "# pass@k: SFT vs PPO, GRPO, NSR, W-REINFORCE (same start, same budget)",
        "",
        scale_note(ctx, questions, f" (a seeded subset), {n} samples each at temperature 1"),
        "",
        *table(
            ["policy", *[f"pass@{k}" for k in ks]],
            [[name, *[fmt(curve[k], 2) for k in ks]] for name, curve in curves.items()],
        ),
        "",
        "Paired differences against the SFT start (bootstrap over questions):",
        "",
        *table(["difference", "mean [95% CI]"], [[k, fmt(v)] for k, v in diffs.items()]),
        "",
        "![pass@k](passk.png)",
    ]
    plot_passk(curves, out / "passk.png", f"pass@k, {questions} test questions x {n} samples (T=1)")
    payload = {
        "scale": dataclasses.asdict(ctx.scale),
        "kinds": KINDS,
        "runs": runs,
        "ks": ks,
        "pass_at_k": curves,
        "differences": diffs,
        "wall_seconds": time.perf_counter() - started,
    }
    write_outputs(out, "passk", payload, md)
    return payload


def question_diversity(rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Per question, over its n samples: distinct queries, unique-query ratio, pairwise similarity
    of the samples' first queries, and distinct answers."""
    from searchenv.metrics import mean_pairwise_similarity
    from searchenv.rewards import query_key

    groups: dict[str, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(row["qid"], []).append(row)
    result: dict[str, dict[str, float]] = {}
    for qid, samples in sorted(groups.items()):
        queries = [q for s in samples for q in s["queries"]]
        first = [s["queries"][0] for s in samples if s["queries"]]
        answers = {str(s["answer"]).strip().lower() for s in samples if s["answer"] is not None}
        result[qid] = {
            "distinct_queries": float(len({query_key(q) for q in queries})),
            "unique_query_ratio": len({query_key(q) for q in queries}) / len(queries) if queries else 0.0,
            "first_query_similarity": mean_pairwise_similarity(first) if len(first) >= 2 else 1.0,
            "distinct_answers": float(len(answers)),
        }
    return result


DIVERSITY_METRICS = ("distinct_queries", "unique_query_ratio", "first_query_similarity", "distinct_answers")


def diversity(ctx: Context) -> dict[str, Any]:
    """SFT expands, RL squeezes: query diversity across the samples of a question (passk samples)."""
    started = time.perf_counter()
    runs = ctx.train([n for n in PASSK_POLICIES if n != "sft"])
    rows = ctx.passk_rows()
    per_q = {name: question_diversity(r) for name, r in rows.items()}
    figures = {
        name: {m: interval([v[m] for v in q.values()]) for m in DIVERSITY_METRICS}
        for name, q in per_q.items()
    }
    diffs = {}
    for name in PASSK_POLICIES[1:]:
        for metric in ("distinct_queries", "first_query_similarity"):
            common = sorted(per_q[name])
            diffs[f"{metric}: {name} - sft"] = paired_bootstrap_diff(
                [per_q[name][q][metric] for q in common], [per_q["sft"][q][metric] for q in common], seed=0
            ).to_dict()
    out = ctx.out("diversity")
    n, questions = ctx.scale.passk_samples, len(per_q["sft"])
    md = [
        "# Query diversity across samples: SFT vs RL (the pass@k samples, no extra rollouts)",
        "",
        scale_note(ctx, questions, f", {n} samples each at temperature 1"),
        "",
        "Per question over its samples: distinct normalized queries; unique-query ratio (distinct / all "
        "queries); mean pairwise similarity of the samples' first queries (1 = identical); distinct answers.",
        "",
        *table(
            ["policy", *DIVERSITY_METRICS],
            [[name, *[fmt(f[m], 2) for m in DIVERSITY_METRICS]] for name, f in figures.items()],
        ),
        "",
        "Paired differences against the SFT start:",
        "",
        *table(["difference", "mean [95% CI]"], [[k, fmt(v, 2)] for k, v in diffs.items()]),
        "",
        "![diversity](diversity.png)",
    ]
    plot_bars(
        figures, ("distinct_queries", "first_query_similarity"), out / "diversity.png", "Query diversity"
    )
    payload = {
        "scale": dataclasses.asdict(ctx.scale),
        "kinds": KINDS,
        "runs": runs,
        "figures": figures,
        "differences": diffs,
        "wall_seconds": time.perf_counter() - started,
    }
    write_outputs(out, "diversity", payload, md)
    return payload


def hacking(ctx: Context) -> dict[str, Any]:
    """Does the strict retry term stop repeat-query inflation? (a) scripted probes, (b) RL."""
    started = time.perf_counter()
    # (a) probes vs the honest heuristic, same episodes scored under each preset's env.
    probe_ids = test_question_ids_all(ctx.scale.probe_questions)
    jobs = {}
    for preset, probe in itertools.product(("rezero", "rezero-strict"), PROBES):
        env = {"task": "factbook", "split": "test", "reward_preset": preset, "max_turns": 6, "top_k": 3}
        jobs[f"probe-{preset}/{probe}"] = {
            "kind": "scripted",
            "source": probe,
            "greedy": True,
            "seed": 0,
            "samples": 1,
            "question_ids": probe_ids,
            "env": env,
            "num_envs": 8,
        }
    probe_rows = cached_samples(jobs, ctx.runs / "samples", ctx.jobs)
    probes = {name.removeprefix("probe-"): behaviour(r) for name, r in probe_rows.items()}
    probe_diffs = {
        f"reward {preset}: {probe} - bm25": paired(
            probe_rows[f"probe-{preset}/{probe}"], probe_rows[f"probe-{preset}/bm25"], lambda r: r["reward"]
        )
        for preset in ("rezero", "rezero-strict")
        for probe in PROBES[1:]
    }
    # (b) the same RL trainer under each preset, from the same start.
    names = ("ppo-rezero", "ppo-strict")
    runs = ctx.train(names)
    rows = ctx.greedy_rows(("sft", *names))
    figures = {n: behaviour(r) for n, r in rows.items()}
    repeat_share = lambda r: r["repeats"] / r["searches"] if r["searches"] else 0.0  # noqa: E731
    rl_diffs = {
        "repeated-query share: ppo-rezero - ppo-strict": paired(
            rows["ppo-rezero"], rows["ppo-strict"], repeat_share
        ),
        "searches: ppo-rezero - ppo-strict": paired(
            rows["ppo-rezero"], rows["ppo-strict"], lambda r: r["searches"]
        ),
        "em: ppo-rezero - ppo-strict": paired(rows["ppo-rezero"], rows["ppo-strict"], lambda r: r["correct"]),
        **{f"repeated-query share: {n} - sft": paired(rows[n], rows["sft"], repeat_share) for n in names},
    }
    out = ctx.out("hacking")
    copy_metrics(ctx.runs, names, out)
    md = [
        "# Persistence under hacking: rezero vs rezero-strict",
        "",
        f"(a) Scripted probes against the honest BM25 heuristic on {len(probe_ids)} test questions "
        "(all kinds and hops), max_turns 6, one deterministic episode each.",
        "",
        *table(
            [
                "preset",
                "agent",
                "reward",
                "EM",
                "searches / episode",
                "repeated-query rate",
                "retry component",
            ],
            [
                [
                    *key.split("/"),
                    fmt(f["reward"], 2),
                    fmt(f["em"], 2),
                    fmt(f["searches_per_episode"], 2),
                    fmt(f["repeated_query_rate"], 2),
                    fmt(f["retry_component"], 2),
                ]
                for key, f in probes.items()
            ],
        ),
        "",
        *table(["paired difference", "mean [95% CI]"], [[k, fmt(v, 2)] for k, v in probe_diffs.items()]),
        "",
        "(b) " + scale_note(ctx, figures["sft"]["n_questions"], ", greedy decoding"),
        "",
        *table(
            ["policy", "test EM", "searches / episode", "repeated-query rate", "repeated share per question"],
            [
                [
                    n,
                    fmt(f["em"]),
                    fmt(f["searches_per_episode"], 2),
                    fmt(f["repeated_query_rate"]),
                    fmt(f["repeated_query_rate_per_question"]),
                ]
                for n, f in figures.items()
            ],
        ),
        "",
        *table(["paired difference", "mean [95% CI]"], [[k, fmt(v)] for k, v in rl_diffs.items()]),
        "",
        "![hacking](hacking.png)",
    ]
    plot_hacking(probes, figures, out / "hacking.png")
    payload = {
        "scale": dataclasses.asdict(ctx.scale),
        "kinds": KINDS,
        "probe_questions": len(probe_ids),
        "probes": probes,
        "probe_differences": probe_diffs,
        "runs": runs,
        "figures": figures,
        "rl_differences": rl_diffs,
        "wall_seconds": time.perf_counter() - started,
    }
    write_outputs(out, "hacking", payload, md)
    return payload


def test_question_ids_all(limit: int | None) -> list[str]:
    """Every test question (all kinds and hops), or a seeded subset of ``limit``."""
    from agents import sft_data

    return sft_data.sample_question_ids(sft_data.select_questions("factbook", "test"), limit, 0)


# ---------------------------------------------------------------------------------------------
# plots


def plot_bars(figures: Mapping[str, Mapping], metrics: Sequence[str], path: Path, title: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    names = list(figures)
    for axis, metric in zip(axes[0], metrics, strict=True):
        means = [figures[n][metric]["mean"] for n in names]
        lows = [m - figures[n][metric]["low"] for n, m in zip(names, means, strict=True)]
        highs = [figures[n][metric]["high"] - m for n, m in zip(names, means, strict=True)]
        axis.bar(names, means, yerr=[lows, highs], capsize=4, color="tab:blue", alpha=0.7)
        axis.set_title(metric.replace("_", " "))
        axis.tick_params(axis="x", rotation=30)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{title} (95% bootstrap CI over questions)")
    save_figure(figure, path)
    plt.close(figure)


def plot_passk(curves: Mapping[str, Mapping[int, Mapping]], path: Path, title: str) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name, curve in curves.items():
        draw_pass_at_k(axis, curve, name, alpha=0.12)
    style_pass_at_k_axis(axis)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    save_figure(figure, path)
    plt.close(figure)


def plot_hacking(probes: Mapping[str, Mapping], figures: Mapping[str, Mapping], path: Path) -> None:
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.38
    agents = list(PROBES)
    for offset, preset in ((-width / 2, "rezero"), (width / 2, "rezero-strict")):
        stats = [probes[f"{preset}/{a}"]["reward"] for a in agents]
        means = [s["mean"] for s in stats]
        errors = [[m - s["low"] for m, s in zip(means, stats)], [s["high"] - m for m, s in zip(means, stats)]]
        left.bar(np.arange(len(agents)) + offset, means, width, yerr=errors, capsize=3, label=preset)
    left.set_xticks(np.arange(len(agents)), agents)
    left.set_ylabel("mean episode reward")
    left.set_title("(a) scripted probes vs honest bm25")
    left.legend()
    names = list(figures)
    rates = [figures[n]["repeated_query_rate"] or 0.0 for n in names]
    right.bar(names, rates, color="tab:red", alpha=0.7)
    right.set_ylabel("share of searches repeating an earlier query")
    right.set_title("(b) RL: repeated-query rate (greedy, test)")
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
    save_figure(figure, path)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------
# command line

RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "persistence": persistence,
    "passk": passk,
    "diversity": diversity,
    "hacking": hacking,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a plumbing check (~1 min)")
    parser.add_argument("--no-progress", action="store_true", help="accepted for symmetry; runs log to files")
    parser.add_argument("--runs", default=None, help="run/sample cache (default runs/experiments[_quick])")
    parser.add_argument("--results", default=None, help="results root (default benchmarks/results[/quick])")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (training and sampling)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    runs = Path(args.runs or ("runs/experiments_quick" if args.quick else "runs/experiments"))
    results = Path(args.results or ("benchmarks/results/quick" if args.quick else "benchmarks/results"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = Context(scale=scale, runs=runs, results=results, jobs=max(1, args.jobs))
    started = time.perf_counter()
    RUNNERS[args.experiment](ctx)
    elapsed = time.perf_counter() - started
    print(f"\n{args.experiment}: {elapsed:.0f} s; results in {results / args.experiment}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
