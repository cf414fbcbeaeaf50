"""TRL on SearchQA, a recipe that learns: SFT on oracle tool calls, then GRPO on env rewards.

    python -m benchmarks.trl_recipe                  # SmolLM2-135M: results/trl_recipe/smollm2-135m.json
    python -m benchmarks.trl_recipe --model tiny --no-progress
    python -m benchmarks.trl_recipe --demos 16 --sft-steps 32 --grpo-steps 4 --train-layers 4

Every stage runs TRL's own trainer on the project's TRL bridge (``searchenv.integrations.trl``):

1. **Before**: the model as loaded plays held-out (dev) questions through ``SearchQAToolEnv``.
2. **SFT**: ``SFTTrainer`` on ``export_demonstrations`` (oracle episodes written as assistant
   ``tool_calls`` and ``tool`` results), assistant-only loss (TRL swaps in its training variant
   of the Qwen2.5 template, whose ``{% generation %}`` marks cover the assistant turns and
   their ``<|im_end|>``), constant learning rate; then the same evaluation.
3. **GRPO**: ``GRPOTrainer(environment_factory=make_env_factory(...), reward_funcs=searchqa_reward)``
   on train questions; TRL parses each ``<tool_call>``, runs it in the env and logs
   ``tools/call_frequency`` and ``rewards/searchqa_reward/mean`` per step; then the same evaluation.

The evaluation is greedy and identical at each stage (``evaluate_tool_use``): TRL's chat
template renders the prompt with the tools' schemas, TRL's ``parse_response`` reads each reply,
and each parsed call is run on the env as ``GRPOTrainer`` runs it. Reported per stage:
``tool_call_rate`` (share of episodes whose first reply is a tool call the env accepts by name
and arguments), ``calls_per_episode``, ``answered``, ``em`` and the env ``reward``
(``rezero-strict`` by default: at most 9).

Episodes are kept short for a CPU (``max_turns=2``, one 80-character snippet per search): a
demonstration is a search, then an answer, then a one-line reply. ``--train-layers K`` trains
the top K decoder layers only (the others and the tied embeddings frozen), which makes a
backward pass on a CPU several times cheaper. Times are this process's CPU time
(``time.process_time``), so other jobs on a shared machine do not count; wall time is
reported beside it. Checkpoints and TRL's outputs go to ``--out`` (default
``runs/trl_recipe/<model>``); the results JSON names the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.device import machine_description
from searchenv.integrations.trl import (
    SearchQAToolEnv,
    export_dataset,
    export_demonstrations,
    make_env_factory,
    searchqa_reward,
    tool_schemas,
    use_tool_chat_template,
)
from tasks.storage import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "trl_recipe"


@dataclasses.dataclass
class RecipeConfig:
    """What the recipe runs; the defaults are the SmolLM2-135M run on a CPU."""

    model: str = "smollm2-135m"
    """``tiny``, ``smollm2-135m`` or a local model folder (``agents.lm.models.load_model``)."""
    demos: int = 16
    """Distinct train questions demonstrated (few: the format is what SFT must teach)."""
    sft_steps: int = 32
    sft_lr: float = 1e-4
    sft_batch_size: int = 1
    train_layers: int | None = 4
    """Train only the top K decoder layers (None: every weight)."""
    grpo_steps: int = 4
    grpo_questions: int = 16
    """Train questions GRPO draws its groups from (disjoint from none: they may include the demos')."""
    num_generations: int = 4
    """Rollouts per GRPO group (one group per step)."""
    grpo_lr: float = 1e-5
    eval_questions: int = 16
    """Held-out dev questions played greedily at each stage."""
    max_turns: int = 2
    top_k: int = 1
    snippet_chars: int = 80
    reward_preset: str = "rezero-strict"
    max_new_tokens: int = 64
    """Tokens per reply in the evaluation (a tool call takes ~30)."""
    max_completion_length: int = 256
    """GRPO's budget per rollout, tool results included (~150 tokens at the defaults)."""
    seed: int = 0
    threads: int = 1
    out: str | None = None
    """TRL's output folder (default ``runs/trl_recipe/<model name>``)."""

    def env_kwargs(self) -> dict[str, Any]:
        """The env settings shared by the demonstrations, the GRPO env factory and the evaluation."""
        return {
            "max_turns": self.max_turns,
            "top_k": self.top_k,
            "snippet_chars": self.snippet_chars,
            "reward_preset": self.reward_preset,
        }

    def __post_init__(self) -> None:
        positive: tuple[str, ...] = (
            "demos",
            "sft_batch_size",
            "grpo_questions",
            "num_generations",
            "eval_questions",
        )
        positive += (
            "max_turns",
            "top_k",
            "snippet_chars",
            "max_new_tokens",
            "max_completion_length",
            "threads",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sft_steps", "grpo_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be >= 1 or None, got {self.train_layers}")


def prepare_tokenizer(tokenizer: Any) -> Any:
    """TRL's Qwen2.5 tool-calling template and its response parser on a ChatML tokenizer."""
    from trl.chat_template_utils import add_response_schema

    use_tool_chat_template(tokenizer)
    add_response_schema(tokenizer)  # parse_response reads <tool_call>{...}</tool_call> with it
    return tokenizer


def train_top_layers(model: Any, layers: int | None) -> int:
    """Freeze every weight but the top ``layers`` decoder layers and the final norm.

    The tied input/output embeddings stay frozen. Returns the number of trainable parameters.

    Raises:
        ValueError: If the model has fewer decoder layers than asked.
    """
    if layers is None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    else:
        blocks = model.model.layers
        if layers > len(blocks):
            raise ValueError(f"train_layers={layers} but the model has {len(blocks)} decoder layers")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for module in [*blocks[len(blocks) - layers :], model.model.norm]:
            for parameter in module.parameters():
                parameter.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _reply(model: Any, tokenizer: Any, messages: list[dict[str, Any]], max_new_tokens: int) -> dict[str, Any]:
    """One greedy assistant reply, parsed by TRL as GRPOTrainer parses it."""
    import torch
    from trl.chat_template_utils import parse_response

    tools: list[Any] = tool_schemas()
    prompt = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    with torch.no_grad():
        output = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    parsed: dict[str, Any] = parse_response(
        tokenizer, output[0, len(prompt) :].tolist(), prefix=prompt, tools=tools
    )
    return parsed


def _run_call(env: SearchQAToolEnv, call: Mapping[str, Any]) -> tuple[str, str, bool]:
    """``(name, result, accepted)`` for one parsed call, run the way GRPOTrainer runs it."""
    function = call.get("function") or {}
    name = str(function.get("name", "unknown"))
    if call.get("type") != "function" or name not in ("search", "read", "answer"):
        return name, str({"error": f"Tool {name} not found."}), False
    try:
        return name, getattr(env, name)(**(function.get("arguments") or {})), True
    except Exception as error:  # as TRL does: the exception's text becomes the tool result
        return name, str({"error": str(error)}), False


def evaluate_tool_use(
    model: Any,
    tokenizer: Any,
    rows: Iterable[Mapping[str, Any]],
    env_kwargs: Mapping[str, Any],
    *,
    max_new_tokens: int = 64,
    max_calls: int | None = None,
    progress: bool = False,
    description: str = "evaluate",
) -> dict[str, Any]:
    """Play each row's question greedily through ``SearchQAToolEnv`` with TRL's template and parser.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer after ``prepare_tokenizer``.
        rows: ``export_dataset`` rows (a system message, ``question_id``, ``split``).
        env_kwargs: ``SearchQAToolEnv`` arguments (those the demonstrations and GRPO use).
        max_new_tokens: Tokens per reply.
        max_calls: Replies with tool calls per episode (default: ``max_turns + 1``, as a
            GRPOTrainer with ``max_tool_calling_iterations=max_turns + 1``).
        progress: A tqdm bar over episodes.
        description: The bar's label.

    Returns:
        ``tool_call_rate`` (first reply is a call the env accepts), ``calls_per_episode``
        (accepted calls), ``answered``, ``em``, ``reward`` (means over episodes), ``episodes``,
        and ``records``: per episode the question id, the calls, the reward and the first reply.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to evaluate")
    limit = max_calls if max_calls is not None else int(env_kwargs.get("max_turns", 8)) + 1
    was_training = model.training
    model.eval()
    env = SearchQAToolEnv("factbook", **env_kwargs)
    bar = _bar(len(rows), description, progress)
    records: list[dict[str, Any]] = []
    for row in rows:
        messages = [row["prompt"][0], {"role": "user", "content": env.reset(**row)}]
        calls: list[tuple[str, bool]] = []
        first_reply: dict[str, Any] | None = None
        for _ in range(limit):
            reply = _reply(model, tokenizer, messages, max_new_tokens)
            first_reply = reply if first_reply is None else first_reply
            messages.append(reply)
            if not reply.get("tool_calls"):
                break
            for call in reply["tool_calls"]:
                name, result, accepted = _run_call(env, call)
                calls.append((name, accepted))
                messages.append({"role": "tool", "name": name, "content": result})
        first_calls = (first_reply or {}).get("tool_calls") or []
        info = env.info
        records.append(
            {
                "question_id": row["question_id"],
                "first_reply_is_call": bool(calls) and bool(first_calls) and calls[0][1],
                "calls": [name for name, accepted in calls if accepted],
                "answered": env.done and info.get("tool") == "answer" and info.get("error") is None,
                "correct": bool(env.correct),
                "reward": env.reward,
                "first_reply": first_reply,
            }
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    n = len(records)
    return {
        "episodes": n,
        "tool_call_rate": sum(r["first_reply_is_call"] for r in records) / n,
        "calls_per_episode": sum(len(r["calls"]) for r in records) / n,
        "answered": sum(r["answered"] for r in records) / n,
        "em": sum(r["correct"] for r in records) / n,
        "reward": sum(r["reward"] for r in records) / n,
        "records": records,
    }


def sft_warm_start(
    model: Any,
    tokenizer: Any,
    demos: Any,
    *,
    output_dir: str | os.PathLike[str],
    steps: int,
    learning_rate: float,
    batch_size: int = 1,
    seed: int = 0,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL's ``SFTTrainer`` on ``export_demonstrations`` rows, assistant-only loss; returns the trainer."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        per_device_train_batch_size=batch_size,
        max_length=4096,
        assistant_only_loss=True,
        **_trainer_arguments(model, progress, seed),
    )
    trainer = SFTTrainer(
        model=model, processing_class=tokenizer, train_dataset=demos, args=args, callbacks=list(callbacks)
    )
    trainer.train()
    return trainer


def grpo_trainer(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    env_kwargs: Mapping[str, Any],
    *,
    output_dir: str | os.PathLike[str],
    steps: int,
    learning_rate: float,
    num_generations: int,
    max_completion_length: int = 256,
    seed: int = 0,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL's ``GRPOTrainer`` with ``environment_factory`` on env rewards, one group a step (untrained)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is marked experimental
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=num_generations,
        num_generations=num_generations,
        max_steps=steps,
        max_completion_length=max_completion_length,
        max_tool_calling_iterations=int(env_kwargs.get("max_turns", 8)) + 1,
        learning_rate=learning_rate,
        beta=0.0,
        **_trainer_arguments(model, progress, seed),
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=args,
        reward_funcs=searchqa_reward,
        train_dataset=dataset,
        environment_factory=make_env_factory("factbook", **env_kwargs),
        callbacks=list(callbacks),
    )
    return trainer


def grpo(model: Any, tokenizer: Any, dataset: Any, env_kwargs: Mapping[str, Any], **kwargs: Any) -> Any:
    """``grpo_trainer(...)`` trained; returns the trainer (its ``state.log_history`` holds TRL's logs)."""
    trainer = grpo_trainer(model, tokenizer, dataset, env_kwargs, **kwargs)
    trainer.train()
    return trainer


def run_recipe(cfg: RecipeConfig, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate, SFT, evaluate, GRPO, evaluate; the figures and the logs of each stage."""
    import torch

    from agents.lm.models import load_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out or Path("runs") / "trl_recipe" / Path(cfg.model).name)
    env_kwargs = cfg.env_kwargs()
    clock = _Clock()
    model, tokenizer = load_model(cfg.model, dtype=torch.float32, seed=cfg.seed)
    prepare_tokenizer(tokenizer)
    trainable = train_top_layers(model, cfg.train_layers)
    clock.lap("load")
    eval_rows = list(export_dataset("dev", hops=1, limit=cfg.eval_questions, seed=cfg.seed))

    def evaluate(stage: str) -> dict[str, Any]:
        figures = evaluate_tool_use(
            model,
            tokenizer,
            eval_rows,
            env_kwargs,
            max_new_tokens=cfg.max_new_tokens,
            progress=progress,
            description=f"eval {stage}",
        )
        clock.lap(f"eval_{stage}")
        return figures

    stages: dict[str, Any] = {"before": evaluate("before")}
    demos = export_demonstrations("train", hops=1, limit=cfg.demos, seed=cfg.seed, **env_kwargs)
    sft = sft_warm_start(
        model,
        tokenizer,
        demos,
        output_dir=out / "sft",
        steps=cfg.sft_steps,
        learning_rate=cfg.sft_lr,
        batch_size=cfg.sft_batch_size,
        seed=cfg.seed,
        progress=progress,
    )
    sft_log = [_scalars(entry) for entry in sft.state.log_history if "loss" in entry]
    clock.lap("sft")
    stages["after_sft"] = evaluate("after_sft")
    grpo_rows = export_dataset("train", hops=1, limit=cfg.grpo_questions, seed=cfg.seed + 1)
    trainer = grpo(
        model,
        tokenizer,
        grpo_rows,
        env_kwargs,
        output_dir=out / "grpo",
        steps=cfg.grpo_steps,
        learning_rate=cfg.grpo_lr,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        seed=cfg.seed,
        progress=progress,
    )
    grpo_log = [
        _scalars(entry) for entry in trainer.state.log_history if "rewards/searchqa_reward/mean" in entry
    ]
    clock.lap("grpo")
    stages["after_grpo"] = evaluate("after_grpo")
    return {
        "config": dataclasses.asdict(cfg),
        "env_kwargs": env_kwargs,
        "trainable_parameters": trainable,
        "stages": {
            name: {k: v for k, v in figures.items() if k != "records"} for name, figures in stages.items()
        },
        "records": {name: figures["records"] for name, figures in stages.items()},
        "sft_log": sft_log,
        "grpo_log": grpo_log,
        "cpu_seconds": clock.cpu,
        "wall_seconds": clock.wall,
        "machine": machine_description(torch.device("cpu")),
        "versions": _versions(),
    }


class _Clock:
    """CPU and wall seconds per named stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def lap(self, name: str) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        self.cpu[name], self.wall[name] = round(cpu - self._cpu, 1), round(wall - self._wall, 1)
        self._cpu, self._wall = cpu, wall


def _scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in entry.items() if isinstance(v, int | float)}


def _trainer_arguments(model: Any, progress: bool, seed: int) -> dict[str, Any]:
    """What both trainers' configs share: log every step, save nothing, the model's device, fp32."""
    on_cpu = bool(next(model.parameters()).device.type == "cpu")
    return {
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": on_cpu,
        "bf16": False,
        "disable_tqdm": not progress,
        "seed": seed,
    }


def _versions() -> dict[str, str]:
    import datasets
    import transformers
    import trl

    return {
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
    }


def _bar(total: int, description: str, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="ep", leave=False)


def summary(result: Mapping[str, Any]) -> str:
    """The stages as a Markdown table."""
    lines = [
        "| stage | tool-call rate | calls / episode | answered | EM | env reward |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stage, figures in result["stages"].items():
        lines.append(
            f"| {stage} | {figures['tool_call_rate']:.3f} | {figures['calls_per_episode']:.2f} | "
            f"{figures['answered']:.3f} | {figures['em']:.3f} | {figures['reward']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the recipe and write ``results/trl_recipe/<model>.json``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = RecipeConfig()
    for field in dataclasses.fields(RecipeConfig):
        default = getattr(defaults, field.name)
        kind = {"int": int, "float": float, "str": str}.get(str(field.type).split(" ")[0], str)
        if field.name == "train_layers":
            kind = int
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument(
        "--all-layers", action="store_true", help="train every weight (overrides --train-layers)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--results", type=Path, default=None, help="default: results/trl_recipe/<model>.json")
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RecipeConfig)}
    if args.all_layers:
        values["train_layers"] = None
    cfg = RecipeConfig(**values)
    result = run_recipe(cfg, progress=not args.no_progress)
    path = args.results or RESULTS / f"{Path(cfg.model).name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    print(summary(result))
    print(f"CPU seconds per stage: {result['cpu_seconds']}; wrote {path}")
    return result


if __name__ == "__main__":
    main()
