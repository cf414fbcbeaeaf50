"""Weights in and out: base models, LoRA, checkpoints written and read back, checkpoints as policies.

A checkpoint folder (see ``agents.checkpoint`` for the atomic layout) holds ``model/`` (a
``save_pretrained`` folder with its tokenizer) or ``adapter/`` (a peft LoRA adapter on top of
``state.json["base_model"]``), plus the optimizer, scheduler, RNG and, for PPO, value-head
states a resumed run needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents import checkpoint as ckpt
from agents.config import config_from_dict
from agents.device import resolve_device, resolve_dtype, torch_module

if TYPE_CHECKING:
    from agents.learner import Run
    from agents.lm.policy import LMPolicy

CHECKPOINT_FORMAT = "searchqa-checkpoint-1"


def _tokenizer_texts(task: str, task_kwargs: Mapping[str, Any] | None = None) -> list[str] | None:
    """Text a from-scratch ('tiny') tokenizer learns: None means the factbook default."""
    if task == "factbook" and not task_kwargs:
        return None
    from agents.lm.models import env_vocabulary_texts
    from searchenv.resources import shared_task

    loaded = shared_task(task, **dict(task_kwargs or {}))
    passages = [(p.doc_id, p.title, p.text) for p in loaded.corpus.passages()]
    return list(env_vocabulary_texts(passages, [q.question for q in loaded.questions("train")]))


def load_base_model(
    source: str,
    *,
    task: str,
    seed: int,
    dtype: str,
    cache_dir: str | None,
    device: str = "auto",
    task_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) on ``device`` from a source ('tiny', 'smollm2-135m', a folder) or a checkpoint."""
    path = Path(source)
    if path.exists() and (is_checkpoint(path) or ckpt.latest_checkpoint(path) is not None):
        return load_checkpoint_model(resolve_checkpoint(path), dtype=dtype, device=device)
    from agents.lm.models import load_model

    target = resolve_device(device)
    corpus_texts = _tokenizer_texts(task, task_kwargs) if source == "tiny" else None
    model, tokenizer = load_model(
        source, dtype=resolve_dtype(dtype, target), cache_dir=cache_dir, corpus_texts=corpus_texts, seed=seed
    )
    return model.to(target), tokenizer


def add_lora(model: Any, rank: int, alpha: int) -> Any:
    """``model`` wrapped with LoRA adapters on every attention and MLP projection."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("--lora needs peft: pip install -e .[agents]") from error
    lora = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def save_checkpoint(run: Run, step: int, wall_time: float) -> Path:
    """Write the run's state after ``step`` steps as an atomic checkpoint; return its folder."""
    torch = torch_module()
    cfg, learner = run.cfg, run.learner

    def write(folder: Path) -> None:
        if cfg.lora:
            learner.model.save_pretrained(folder / "adapter")
        else:
            learner.model.save_pretrained(folder / "model", safe_serialization=True)
        learner.tokenizer.save_pretrained(folder / ("adapter" if cfg.lora else "model"))
        if learner.value_head is not None:
            torch.save(learner.value_head.state_dict(), folder / "value_head.pt")
        torch.save(learner.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(learner.scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(ckpt.rng_state(run.rng), folder / "rng.pt")

    state = {
        "config": dataclasses.asdict(cfg),
        "base_model": learner.base_source,
        "lora": cfg.lora,
        "wall_time": wall_time,
        "format": CHECKPOINT_FORMAT,
    }
    return ckpt.write_checkpoint(cfg.out, step, write, state, keep_last=cfg.keep_last)


def load_weights_into(model: Any, checkpoint: Path, *, lora: bool) -> None:
    """Copy a checkpoint's trained weights (full model or LoRA adapter) into ``model``."""
    from safetensors.torch import load_file

    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter" / "adapter_model.safetensors")))
        return
    state = {}
    for shard in sorted((checkpoint / "model").glob("*.safetensors")):
        state.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied input/output embeddings are saved once; anything else missing is a real mismatch.
    real_missing = [k for k in missing if "lm_head" not in k]
    if real_missing or unexpected:
        raise RuntimeError(
            f"checkpoint {checkpoint} does not fit the model: missing {real_missing}, unexpected {unexpected}"
        )


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a complete checkpoint folder (it has its state file)."""
    return (path / ckpt.STATE_FILE).is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder as given, or the latest complete checkpoint of a run folder."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    latest = ckpt.latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint nor a run folder with a complete checkpoint")
    return latest


def load_checkpoint_model(
    checkpoint: str | Path, *, dtype: str | None = None, device: str = "auto"
) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint on ``device``, LoRA adapters merged into the base weights.

    A checkpoint loads on either device, whichever it was trained on; ``dtype`` defaults to the
    one it was trained with (``auto`` resolves on the device it loads on).
    """
    from agents.lm.models import load_model

    path = resolve_checkpoint(checkpoint)
    state = ckpt.read_state(path)
    config = config_from_dict(state["config"])
    target = resolve_device(device)
    if not state.get("lora"):
        model, tokenizer = load_model(str(path / "model"), dtype=resolve_dtype(dtype or config.dtype, target))
        return model.to(target), tokenizer
    from peft import PeftModel
    from transformers import AutoTokenizer

    base, _ = load_base_model(
        state["base_model"],
        task=config.task,
        seed=config.seed,
        dtype=dtype or config.dtype,
        cache_dir=config.cache_dir,
        device=device,
        task_kwargs=config.task_kwargs,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path / "adapter"))
    merged = PeftModel.from_pretrained(base, str(path / "adapter")).merge_and_unload()
    return merged, tokenizer


def load_policy(
    path: str | Path,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> LMPolicy:
    """A trained checkpoint (or a run folder's latest) as a ``Policy`` for rollouts and leaderboards."""
    from agents.lm.policy import LMPolicy

    checkpoint = resolve_checkpoint(path)
    config = config_from_dict(ckpt.read_state(checkpoint)["config"])
    model, tokenizer = load_checkpoint_model(checkpoint, device=device)
    model.eval()
    return LMPolicy(
        model,
        tokenizer,
        max_new_tokens=max_new_tokens or config.max_new_tokens,
        temperature=temperature,
        greedy=greedy,
        seed=seed,
        name=f"{config.algo}:{checkpoint.parent.parent.name}@{checkpoint.name}",
    )
