"""Seconds per RL step by phase, each speed lever turned on one at a time: tiny and SmolLM2.

    python -m benchmarks.bench_step                                  # tiny and smollm2-135m, one thread
    python -m benchmarks.bench_step --models tiny --episodes 8       # a quick run
    python -m benchmarks.bench_step --smollm2-init runs/smol_sft     # SmolLM2 from an SFT checkpoint
    python -m benchmarks.bench_step --device cuda                    # on a GPU: step_cuda.json
    python -m benchmarks.bench_step --em-checkpoint runs/smol_sft    # EM cost of fewer tokens

A step is ``agents.rl.PolicyGradient.step`` (collect -> score: the rescoring pass and the
KL reference pass -> advantages -> update), the one training runs; its phases come from the
metrics it logs (``agents.update.PhaseClock``). Time is this process's CPU time on a CPU
(other jobs on a shared machine do not count), wall-clock on a GPU. Each variant
(``VARIANTS``) adds one lever to the row above it, from the same weights and seed: rollout
log-probs and the top layers on trunk states are exact (``tests/test_trunk.py``); shorter
episodes change the work. Writes ``benchmarks/results/step_cpu.{json,md}`` (``step_cuda`` on a GPU).

``--em-checkpoint`` measures instead what shorter episodes cost in exact match: the checkpoint
plays the same questions greedily under each ``TOKEN_SETTINGS`` entry, compared with the
setting it was trained with by a paired bootstrap (``step_tokens_em.{json,md}``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.device import machine_description
from benchmarks.tables import cell, table
from tasks.storage import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"
SHORT_OBSERVATIONS = ("--snippet-chars", "120", "--top-k", "2")
SHORT_EPISODES = (*SHORT_OBSERVATIONS, "--read-chars", "300", "--prompt", "short")
ROLLOUT = ("--old-logprobs", "rollout")
# Rows before "equal histories" share whole equal prompts only, as when they were measured.
PROMPTS = ("--prefix-sharing", "prompts")
HISTORIES = ("--prefix-sharing", "histories")
SHORT = (*ROLLOUT, *SHORT_EPISODES)
# name: (algorithm, training options); each row adds one lever to the row above it.
CHEAP = (*SHORT, "--train-layers", "4", "--micro-batch-size", "4", "--num-envs", "16")
NO_KL = ("--kl-coef", "0")
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nsr: levers off": ("nsr", PROMPTS),
    "nsr: + rollout log-probs": ("nsr", (*PROMPTS, *ROLLOUT)),
    "nsr: + short episodes": ("nsr", (*PROMPTS, *SHORT)),
    "nsr: + top 8 layers on trunk states": ("nsr", (*PROMPTS, *SHORT, "--train-layers", "8")),
    "nsr: + top 4 layers": ("nsr", (*PROMPTS, *SHORT, "--train-layers", "4")),
    "nsr: + micro-batches of 4, 16 envs in one batch": ("nsr", (*PROMPTS, *CHEAP)),
    "nsr: + shared histories and prefixes (the template before each question)": ("nsr", CHEAP),
    "nsr: + top 2 layers": ("nsr", (*CHEAP, "--train-layers", "2")),
    "grpo: cheap path, KL 0.04": ("grpo", (*PROMPTS, *CHEAP)),
    "grpo: + KL weight 0 (no reference pass)": ("grpo", (*PROMPTS, *CHEAP, *NO_KL)),
    "grpo: + equal histories shared (a group's alike turns)": ("grpo", (*HISTORIES, *CHEAP, *NO_KL)),
    "grpo: + shared prefixes": ("grpo", (*CHEAP, *NO_KL)),
}
PHASES = ("rollout", "score", "update", "step")


def measure_variant(model: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build a fresh run of variant ``name`` and time ``args.steps`` RL steps of it, phase by phase.

    The step is the one training runs (``run.algorithm.step``); its phases are read from the
    metrics it logs (``agents.update.PhaseClock``), nothing is patched.
    """
    import numpy as np
    import torch

    from agents.algos import get_algorithm, resolve
    from agents.config import config_from_args
    from agents.learner import Run, build_learner

    algo, extra = VARIANTS[name]
    options = ["--algo", algo, "--model", model, *common_options(model, args), *extra]
    cfg = resolve(config_from_args(options))
    torch.manual_seed(cfg.seed)
    algorithm = get_algorithm(cfg.algo)
    run = Run(cfg, algorithm(), build_learner(cfg, algorithm), np.random.default_rng(cfg.seed))
    for step in range(args.warmup_steps):
        run.algorithm.step(run, step)
    metrics = []
    for step in range(args.warmup_steps, args.warmup_steps + args.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        if args.device_type == "cuda":
            torch.cuda.synchronize()
        record = run.algorithm.step(run, step)
        if args.device_type == "cuda":
            torch.cuda.synchronize()
        record["step_time"], record["step_cpu_time"] = time.perf_counter() - wall, time.process_time() - cpu
        metrics.append(record)
    summary = summarize(metrics, cfg.update_epochs or 1, args.device_type == "cuda")
    return {"variant": name, "command": "python -m agents.train " + " ".join(options), **summary}


def common_options(model: str, args: argparse.Namespace) -> list[str]:
    """The options every variant of ``model`` shares (the SmolLM2 runs of learning_smollm2)."""
    init = args.smollm2_init if model.startswith("smollm2") else args.tiny_init
    options = ["--hops", "1", "--max-turns", "4", "--max-new-tokens", "32", "--snippet-chars", "200"]
    options += ["--episodes-per-step", str(args.episodes), "--num-envs", "8", "--lr", "1e-5"]
    options += ["--micro-batch-size", str(args.micro_batch_size), "--threads", str(args.threads)]
    options += ["--device", args.device, "--dtype", args.dtype, "--no-progress"]
    options += ["--steps", str(args.warmup_steps + args.steps), "--out", "runs/bench_step"]
    return options + (["--init", init] if init else [])


def summarize(metrics: Sequence[dict[str, Any]], epochs: int, on_gpu: bool) -> dict[str, Any]:
    """Per-step seconds by phase (CPU time on a CPU, wall-clock on a GPU), throughputs, metrics."""
    steps = len(metrics)
    suffix = "_time" if on_gpu else "_cpu_time"
    seconds = {phase: sum(m.get(phase + suffix, 0.0) for m in metrics) / steps for phase in PHASES}
    generated = sum(m.get("generated_tokens", 0.0) for m in metrics)
    decode = sum(m.get("decode_cpu_time", 0.0) for m in metrics)
    tokens, episodes = sum(m["tokens"] for m in metrics), sum(m["episodes"] for m in metrics)
    return {
        "seconds_per_step": seconds,
        "wall_seconds_per_step": sum(m["step_time"] for m in metrics) / steps,
        "tokens_per_episode": tokens / episodes,
        "generated_tokens_per_step": generated / steps,
        "prefill_tokens_per_step": sum(m.get("prefill_tokens", 0.0) for m in metrics) / steps,
        "shared_prompt_tokens_per_step": sum(m.get("shared_prompt_tokens", 0.0) for m in metrics) / steps,
        "generation_tokens_per_second": generated / max(seconds["rollout"] * steps, 1e-9),
        "decode_tokens_per_second": generated / max(decode, 1e-9),
        "update_tokens_per_second": tokens * epochs / max(seconds["update"] * steps, 1e-9),
        "step_metrics": [
            {key: m[key] for key in ("reward_mean", "logprob_gap", "ratio_mean", "kl") if key in m}
            for m in metrics
        ],
    }


def forward_probe(model_name: str, device: Any, tokens: int = 256) -> dict[str, float]:
    """No-grad forward tokens per second of one sequence, in float32 and in bfloat16."""
    import torch

    from agents.lm.models import load_model

    ids = torch.randint(0, 1000, (1, tokens), device=device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    rates = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model(model_name, dtype=dtype)[0].to(device).eval()
        with torch.no_grad():
            model(input_ids=ids[:, :16])  # first-call allocations
            started = clock()
            model(input_ids=ids)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[f"{dtype}_tokens_per_second"] = tokens / (clock() - started)
    return rates


def warm_retrieval() -> None:
    """Build the index and compile the retriever once, outside every timed step."""
    import gymnasium as gym

    import searchenv  # noqa: F401  (registers the env ids)

    with gym.make("SearchQA-v0", split="train", hops=1) as env:
        env.reset(seed=0)
        env.step("<search>capital</search>")


# name: (env options, prompt reduced to its question line, read passages cut to this many chars)
TOKEN_SETTINGS: dict[str, tuple[dict[str, Any], bool, int | None]] = {
    "as trained (snippets of 200 chars, top 3)": ({}, False, None),
    "snippets of 120 chars": ({"snippet_chars": 120}, False, None),
    "top 2 hits": ({"top_k": 2}, False, None),
    "snippets of 120 chars, top 2": ({"snippet_chars": 120, "top_k": 2}, False, None),
    "prompt: the question line only": ({}, True, None),
    "reads cut to 500 chars": ({}, False, 500),
}


class ShortenedObservations:
    """A policy that sees shortened observations: the question line alone, reads cut short."""

    def __init__(self, policy: Any, question_only: bool, read_chars: int | None) -> None:
        """Wrap ``policy``, cutting its prompts to the question line and its reads to ``read_chars``."""
        self.policy, self.name = policy, policy.name
        self.question_only, self.read_chars = question_only, read_chars
        self.reset, self.pop_episode = policy.reset, policy.pop_episode

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        """The wrapped policy's actions on the shortened observations."""
        return self.policy.act([self._cut(o, i) for o, i in zip(observations, infos, strict=True)], infos)

    def _cut(self, observation: str, info: Mapping[str, Any]) -> str:
        if self.question_only and info.get("turn") == 0:
            return observation.splitlines()[-1]
        if self.read_chars and info.get("tool") == "read" and len(observation) > self.read_chars:
            return observation[: self.read_chars] + " …\n</information>"
        return observation


def measure_token_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Greedy EM and tokens per episode of a checkpoint under each ``TOKEN_SETTINGS`` entry."""
    import numpy as np

    from agents.checkpoint import read_state
    from agents.config import config_from_dict
    from agents.rollout import run_episodes
    from agents.weights import load_policy, resolve_checkpoint
    from searchenv.questions import sample_question_ids, select_questions
    from searchenv.statistics import bootstrap_ci, paired_bootstrap_diff

    checkpoint = resolve_checkpoint(Path(args.em_checkpoint))
    config = config_from_dict(read_state(checkpoint)["config"])
    questions = select_questions(config.task, args.em_split, hops=config.hops, kinds=config.kind_list)
    ids = sample_question_ids(questions, args.em_questions, 0)
    rows, baseline = [], None
    for name, (env_options, question_only, read_chars) in TOKEN_SETTINGS.items():
        policy = ShortenedObservations(load_policy(checkpoint, device=args.device), question_only, read_chars)
        env = {**config.env_kwargs(args.em_split), **env_options}
        results = run_episodes(policy, env, question_ids=ids, progress=False)
        correct = np.array([float(r.correct) for r in results])
        baseline = correct if baseline is None else baseline
        rows.append(
            {
                "setting": name,
                "em": bootstrap_ci(correct).__dict__,
                "em_change": paired_bootstrap_diff(correct, baseline).__dict__,
                "tokens_per_episode": float(np.mean([len(r.tokens.token_ids) for r in results if r.tokens])),
                "prompt_tokens_per_episode": float(
                    np.mean(
                        [
                            r.tokens.action_mask.index(1)
                            for r in results
                            if r.tokens and 1 in r.tokens.action_mask
                        ]
                    )
                ),
                "generated_tokens_per_episode": float(np.mean([r.generated_tokens or 0 for r in results])),
                "turns_per_episode": float(np.mean([len(r.record.turns) for r in results])),
            }
        )
        print(name, rows[-1]["em"], rows[-1]["tokens_per_episode"], flush=True)
    return {"checkpoint": str(checkpoint), "split": args.em_split, "questions": len(ids), "settings": rows}


def em_report(results: dict[str, Any]) -> str:
    """The token settings' EM and tokens as Markdown."""
    header = ["setting", "tokens/episode", "prompt tokens", "turns", "EM [95% CI]", "EM change vs trained"]
    keys = (("tokens_per_episode", 0), ("prompt_tokens_per_episode", 0), ("turns_per_episode", 2), ("em", 3))
    rows = [
        [
            row["setting"],
            *(cell(row[key], digits) for key, digits in keys),
            cell(row["em_change"], signed=True),
        ]
        for row in results["settings"]
    ]
    machine = results["machine"]
    title = f"# EM cost of fewer tokens per episode ({results['questions']} {results['split']} questions)"
    lines = [
        title,
        "",
        f"Checkpoint `{results['checkpoint']}`, greedy; {machine['cpu']}, torch {machine['torch']}.",
    ]
    lines += [
        "",
        *table(header, rows),
        "",
        "EM change: paired bootstrap over the same questions against row 1.",
    ]
    return "\n".join(lines) + "\n"


def report(results: dict[str, Any]) -> str:
    """The results as Markdown: one row per model and variant."""
    phases = PHASES
    header = ["model", "variant", "tokens/ep", *(f"{phase} s" for phase in phases)]
    header += ["gen tok/s", "update tok/s", "logprob gap", "reward"]
    rows = [
        [entry["model"], entry["variant"], cell(entry["tokens_per_episode"], 0)]
        + [cell(entry["seconds_per_step"][phase], 1) for phase in phases]
        + [cell(entry["generation_tokens_per_second"], 1), cell(entry["update_tokens_per_second"], 0)]
        + [f"{gap:.1e}" if (gap := entry["step_metrics"][0].get("logprob_gap")) is not None else "n.a."]
        + [cell(entry["step_metrics"][0]["reward_mean"])]
        for entry in results["runs"]
    ]
    machine = results["machine"]
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    lines = [f"# RL step by phase ({results['clock']}, {machine['torch_threads']} thread(s))", ""]
    lines += [
        f"Machine: {machine['cpu']} ({machine['cpu_capability']}, {machine['cores']} cores{gpu}), "
        f"load average {machine['load_average_1_5_15']} at the start, "
        f"{results['load_average_after']} at the end; torch {machine['torch']}.",
        "",
        *table(header, rows),
        "",
        "Seconds per step; each row adds one lever to the row above it. gen tok/s: generated tokens "
        "per rollout second (prefill included); update tok/s: episode tokens (x epochs) per update second.",
    ]
    for model, probe in results.get("forward_probe", {}).items():
        figures = ", ".join(f"{key.split('_')[0]} {value:.0f}" for key, value in probe.items())
        lines.append(f"\nForward tokens/s of {model}, one sequence of 256 tokens: {figures}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure every model and variant asked for; write and return the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--variants", nargs="+", default=None, help="variant names (default: all)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per step")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per variant")
    parser.add_argument("--warmup-steps", type=int, default=0, help="untimed steps before them")
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tiny-init", default=None, help="start tiny from this checkpoint")
    parser.add_argument("--smollm2-init", default=None, help="start SmolLM2 from this checkpoint")
    parser.add_argument("--no-probe", action="store_true", help="skip the fp32/bf16 forward probe")
    parser.add_argument("--em-checkpoint", default=None, help="measure the EM cost of shorter episodes")
    parser.add_argument("--em-questions", type=int, default=100, help="questions per token setting")
    parser.add_argument("--em-split", default="test")
    parser.add_argument("--out", type=Path, default=None, help="default: results/step_{cpu,cuda}.json")
    args = parser.parse_args(argv)

    import torch

    from agents.device import resolve_device

    device = resolve_device(args.device)
    args.device_type = device.type
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / f"step_{device.type}.json"
    results: dict[str, Any] = {
        "benchmark": "step",
        "machine": machine_description(device),
        "clock": "wall-clock" if device.type == "cuda" else "process CPU time",
        "runs": [],
    }
    warm_retrieval()
    if args.em_checkpoint:
        results.update(measure_token_settings(args))
        out = args.out or RESULTS / "step_tokens_em.json"
    for model in [] if args.em_checkpoint else args.models:
        for name in args.variants or VARIANTS:
            entry = {"model": model, **measure_variant(model, name, args)}
            results["runs"].append(entry)
            print(entry["variant"], model, entry["seconds_per_step"], flush=True)
        if not args.no_probe and model != "tiny":
            results.setdefault("forward_probe", {})[model] = forward_probe(model, device)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    markdown = em_report(results) if args.em_checkpoint else report(results)
    atomic_write_json(out, results, indent=2, sort_keys=False)
    atomic_write_text(out.with_suffix(".md"), markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
