"""Rollout generation speed: batched across 8 envs against one episode at a time.

    python -m benchmarks.bench_generation                  # tiny (fp32), smollm2-135m (fp32 and bf16)
    python -m benchmarks.bench_generation --configs tiny:float32 --episodes 16
    python -m benchmarks.bench_generation --device cuda    # on a GPU: writes generation_cuda.json

For each model the same questions are played twice with the same greedy ``LMPolicy``: once
with ``num_envs=8`` (one batched, KV-cached decode across the envs that are still running)
and once with ``num_envs=1`` (episode by episode). Greedy decoding makes both runs generate
the same tokens (exactly in float32; bf16 rounding can flip a near-tie), so the speed-up
compares equal work. Reported: generated tokens per second of policy time (prefill + decode,
what ``act`` costs) and of decode time alone (prefill work is the same in both runs), the
end-to-end episode wall time, the model load time from the cache and, unless skipped, the
one-off SmolLM2 GGUF conversion time. The target is a >= 3x batched speed-up.

Reference: Hugging Face ``generate`` replays the batched run's turns, the way an agent loop
built on it would: per turn, the episodes' full contexts (left-padded, batches of ``--batch``)
are prefilled again, since ``generate`` keeps no cache between turns, and each row decodes as
many tokens as the policy wrote in that turn (greedy, ``min_new_tokens`` forcing equal work).

Policy time is this process's CPU time on a CPU (``time.process_time``: a shared machine's
other jobs do not count) and wall-clock time on a GPU (where the CPU mostly waits).

Episodes outnumber envs (a finished env takes the next question) so the batch stays full;
with as many episodes as envs, the last long episode runs alone and hides the batching.
Writes ``benchmarks/results/generation.json`` (``generation_cuda.json`` on a GPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.device import DEVICES, machine_description, resolve_device
from tasks.storage import atomic_write_json

RESULTS = Path(__file__).parent / "results"


def policy_clock(device: Any) -> Callable[[], float]:
    """CPU time on a CPU (other jobs on a shared machine do not count), wall-clock on a GPU."""
    return time.perf_counter if device.type == "cuda" else time.process_time


class _TimedPolicy:
    """Wraps an LMPolicy and adds up the time spent in ``act``."""

    def __init__(self, policy: Any, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.name = policy.name
        self.clock = clock
        self.seconds = 0.0

    def act(self, observations: Any, infos: Any) -> list[str]:
        """The wrapped policy's actions, timed."""
        started = self.clock()
        try:
            return self.policy.act(observations, infos)
        finally:
            self.seconds += self.clock() - started

    def reset(self, indices: Any = None) -> None:
        """Reset the wrapped policy's slots."""
        self.policy.reset(indices)

    def pop_episode(self, index: int) -> Any:
        """Hand over the token record of slot ``index`` (the episode loop collects it)."""
        return self.policy.pop_episode(index)


def _run(model: Any, tokenizer: Any, env_kwargs: dict, question_ids: list[str], num_envs: int, args) -> dict:
    from agents.lm.policy import LMPolicy
    from agents.rollout import run_episodes

    lm = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=args.max_new_tokens, seed=0)
    on_cpu = lm.device.type != "cuda"
    policy = _TimedPolicy(lm, policy_clock(lm.device))
    started = time.perf_counter()
    results = run_episodes(policy, env_kwargs, question_ids=question_ids, num_envs=num_envs, progress=False)
    wall = time.perf_counter() - started
    generated = sum(r.generated_tokens or 0 for r in results)
    decode_seconds = lm.stats.decode_cpu_seconds if on_cpu else lm.stats.decode_seconds
    return {
        "num_envs": num_envs,
        "episodes": len(results),
        "generated_tokens": generated,
        "context_tokens": sum(len(r.tokens.token_ids) for r in results if r.tokens is not None),
        "policy_seconds": policy.seconds,
        "wall_seconds": wall,
        "tokens_per_second": generated / policy.seconds,
        "prefill_seconds": lm.stats.prefill_cpu_seconds if on_cpu else lm.stats.prefill_seconds,
        "prefill_tokens": lm.stats.prefill_tokens,
        "shared_prompt_tokens": lm.stats.shared_prompt_tokens,
        "decode_seconds": decode_seconds,
        "decode_steps": lm.stats.decode_steps,
        "decode_tokens_per_second": lm.stats.generated_tokens / decode_seconds,
        "token_ids": [r.tokens.token_ids if r.tokens is not None else [] for r in results],
        "action_masks": [r.tokens.action_mask if r.tokens is not None else [] for r in results],
    }


def _turns(token_ids: list[int], action_mask: list[int]) -> list[tuple[list[int], int]]:
    """An episode's turns as (context before the action, tokens the action took).

    >>> _turns([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 0, 1])
    [([1, 2], 2), ([1, 2, 3, 4, 5], 1)]
    """
    turns, start = [], None
    for position, generated in enumerate([*action_mask, 0]):
        if generated and start is None:
            start = position
        elif not generated and start is not None:
            turns.append((token_ids[:start], position - start))
            start = None
    return turns


def hf_generate_reference(model: Any, tokenizer: Any, run: dict[str, Any], batch: int) -> dict[str, Any]:
    """Time ``model.generate`` on the turns of ``run`` (see the module docstring)."""
    import torch

    episodes = [_turns(ids, mask) for ids, mask in zip(run["token_ids"], run["action_masks"], strict=True)]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    clock = policy_clock(device)
    seconds, calls, generated, prefilled = 0.0, 0, 0, 0
    for first in range(0, len(episodes), batch):
        group = episodes[first : first + batch]
        for turn in range(max(len(turns) for turns in group)):
            rows = [turns[turn] for turns in group if turn < len(turns)]
            width, new = max(len(context) for context, _ in rows), max(count for _, count in rows)
            ids = torch.tensor([[pad] * (width - len(c)) + c for c, _ in rows], device=device)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c, _ in rows], device=device)
            started = clock()
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=pad,
                )
            seconds += clock() - started
            calls += 1
            generated += sum(count for _, count in rows)
            prefilled += sum(len(context) for context, _ in rows)
    return {
        "batch": batch,
        "generate_calls": calls,
        "generated_tokens": generated,
        "prefilled_tokens": prefilled,
        "seconds": seconds,
        "tokens_per_second": generated / seconds,
    }


def measure(source: str, dtype: str, n_episodes: int, args) -> dict[str, Any]:
    """Tokens per second of one model and dtype, batched across envs and one env at a time."""
    import torch

    from agents.device import resolve_device
    from agents.lm.models import load_model
    from searchenv.resources import shared_task

    load_model(source)  # builds or converts on first use; the timed load below is the cached one
    started = time.perf_counter()
    model, tokenizer = load_model(source, dtype=dtype)
    model = model.to(resolve_device(args.device))
    load_seconds = time.perf_counter() - started
    env_kwargs = {"split": "dev", "max_turns": args.max_turns, "top_k": 3}
    question_ids = [q.qid for q in shared_task("factbook").questions("dev")[:n_episodes]]
    _run(model, tokenizer, env_kwargs, question_ids[:2], 2, args)  # warm-up: index, numba, allocator

    batched = _run(model, tokenizer, env_kwargs, question_ids, args.batch, args)
    sequential = _run(model, tokenizer, env_kwargs, question_ids, 1, args)
    reference = hf_generate_reference(model, tokenizer, batched, args.batch)
    same_tokens = batched.pop("token_ids") == sequential.pop("token_ids")
    for run in (batched, sequential):
        del run["action_masks"]
    return {
        "model": source,
        "compute_dtype": dtype,
        "device": str(next(model.parameters()).device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "load_seconds_cached": load_seconds,
        "max_new_tokens": args.max_new_tokens,
        "max_turns": args.max_turns,
        "batched": batched,
        "sequential": sequential,
        "hf_generate": reference,
        "speedup_vs_hf_generate": batched["tokens_per_second"] / reference["tokens_per_second"],
        "speedup_tokens_per_second": batched["tokens_per_second"] / sequential["tokens_per_second"],
        "speedup_decode_tokens_per_second": batched["decode_tokens_per_second"]
        / sequential["decode_tokens_per_second"],
        "speedup_wall": sequential["wall_seconds"] / batched["wall_seconds"],
        "identical_outputs": same_tokens,
    }


def conversion_seconds() -> float:
    """Time the one-off GGUF -> safetensors conversion of SmolLM2 into a throwaway cache."""
    from agents.lm.models import load_model

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        load_model("smollm2-135m", cache_dir=scratch)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every model and dtype asked for; write and return the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["tiny:float32", "smollm2-135m:float32", "smollm2-135m:bfloat16"],
        help="model source and compute dtype pairs",
    )
    parser.add_argument("--episodes", type=int, default=32, help="episodes per run for the tiny model")
    parser.add_argument("--smollm2-episodes", type=int, default=24, help="episodes per run for SmolLM2")
    parser.add_argument("--batch", type=int, default=8, help="envs generated together in the batched run")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: CUDA when torch sees a GPU, else the CPU"
    )
    parser.add_argument("--skip-conversion", action="store_true", help="do not time the SmolLM2 conversion")
    parser.add_argument("--out", type=Path, default=None, help="default: results/generation[_cuda].json")
    args = parser.parse_args(argv)

    import torch

    device = resolve_device(args.device)  # a missing GPU fails here, before anything is measured
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / ("generation_cuda.json" if device.type == "cuda" else "generation.json")
    results: dict[str, Any] = {
        "benchmark": "generation",
        "machine": machine_description(device),
        "clock": "wall-clock" if device.type == "cuda" else "process CPU time",
        "models": [],
    }
    sources = []
    for config in args.configs:
        source, _, dtype = config.partition(":")
        episodes = args.smollm2_episodes if source.startswith("smollm2") else args.episodes
        results["models"].append(measure(source, dtype or "float32", episodes, args))
        sources.append(source)
    if "smollm2-135m" in sources and not args.skip_conversion:
        results["smollm2_conversion_seconds"] = conversion_seconds()

    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_json(out, results, indent=2, sort_keys=False)
    print(_table(results))
    return results


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| model | dtype | run | envs | episodes | tokens | prefill s | decode s | tokens/s "
        "| decode tokens/s | speed-up (all / decode) | same tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["models"]:
        for run in ("batched", "sequential"):
            row = entry[run]
            overall, decode = entry["speedup_tokens_per_second"], entry["speedup_decode_tokens_per_second"]
            speedup = f"{overall:.2f}x / {decode:.2f}x" if run == "batched" else ""
            same = entry["identical_outputs"] if run == "batched" else ""
            lines.append(
                f"| {entry['model']} | {entry['compute_dtype']} | {run} | {row['num_envs']} "
                f"| {row['episodes']} | {row['generated_tokens']} | {row['prefill_seconds']:.1f} "
                f"| {row['decode_seconds']:.1f} | {row['tokens_per_second']:.1f} "
                f"| {row['decode_tokens_per_second']:.1f} | {speedup} | {same} |"
            )
    for entry in results["models"]:
        reference = entry.get("hf_generate")
        if reference:
            lines.append(
                f"| {entry['model']} | {entry['compute_dtype']} | HF generate | {reference['batch']} "
                f"| | {reference['generated_tokens']} | | | {reference['tokens_per_second']:.1f} | "
                f"| batched is {entry['speedup_vs_hf_generate']:.2f}x | |"
            )
    loads = ", ".join(
        f"{e['model']} ({e['compute_dtype']}) {e['load_seconds_cached']:.2f} s" for e in results["models"]
    )
    lines.append(f"\ncached model load: {loads}")
    if "smollm2_conversion_seconds" in results:
        lines.append(f"SmolLM2 GGUF conversion (one-off): {results['smollm2_conversion_seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
