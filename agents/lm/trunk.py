"""Train the top K decoder layers on cached trunk states: the cheap update path on a CPU.

With ``--train-layers K`` the bottom ``L - K`` layers of an ``L``-layer decoder (and the
embeddings, hence the tied output head) are frozen. Their output for a token depends only on
the tokens before it, so it is computed once and reused by every update pass and micro-batch:

    rollout   ``LMPolicy(record_trunk=b)`` keeps the hidden state entering layer ``b = L - K``
              of every token it runs (prefill or decode), as a forward hook on the layer below;
              the episode's record carries them (``EpisodeTokens.trunk_states``)
    fallback  ``with_trunk_states`` computes them in one no-grad pass over the bottom layers
              for trajectories that lack them (SFT's fixed demonstrations: once per run)
    update    ``top_forward`` runs layers ``b..L-1`` and the final norm on the cached states;
              the caller projects to the vocabulary only at action tokens

Exact: the same layers, the same masks and rotary positions as the model's own forward
(``tests/test_trunk.py`` compares losses and gradients with the full path). Supports the
decoders with ``model.layers``, ``model.norm`` and ``model.rotary_emb`` (Llama, SmolLM2, Qwen2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents.lm.models import require_torch

if TYPE_CHECKING:
    from agents.lm.trajectory import Trajectory


def decoder_of(model: Any) -> Any:
    """The decoder stack (embeddings, layers, norm, rotary) of a causal LM, through peft wrappers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    missing = [
        name for name in ("embed_tokens", "layers", "norm", "rotary_emb") if not hasattr(decoder, name)
    ]
    if decoder is None or missing:
        raise NotImplementedError(
            f"--train-layers needs a Llama-style decoder (embed_tokens, layers, norm, rotary_emb); "
            f"{type(base).__name__} lacks {', '.join(missing) or 'get_decoder()'}: train all layers instead"
        )
    return decoder


def boundary_layer(model: Any, train_layers: int) -> int:
    """Index of the first trained layer: ``L - K`` for K trained layers of L."""
    count = len(decoder_of(model).layers)
    if not 1 <= train_layers <= count:
        raise ValueError(f"train_layers must be in 1..{count} for this model, got {train_layers}")
    return count - train_layers


def freeze_trunk(model: Any, train_layers: int) -> None:
    """Leave only the top ``train_layers`` layers and the final norm trainable.

    With LoRA, only those layers' adapters stay trainable (the base weights are frozen anyway).
    """
    decoder = decoder_of(model)
    boundary = boundary_layer(model, train_layers)
    trained = {id(p) for layer in decoder.layers[boundary:] for p in layer.parameters()}
    trained |= {id(p) for p in decoder.norm.parameters()}
    lora = hasattr(model, "get_base_model")
    for name, parameter in model.named_parameters():
        keep = id(parameter) in trained and (not lora or "lora_" in name)
        parameter.requires_grad_(keep)


def causal_bias(attention_mask: Any, dtype: Any) -> Any:
    """[B, 1, T, T] additive mask: each token sees itself and earlier real tokens."""
    torch, _ = require_torch()
    length = attention_mask.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
    bias = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)


def run_layers(decoder: Any, hidden: Any, attention_mask: Any, layers: Sequence[Any]) -> Any:
    """``hidden`` [B, T, H] through ``layers`` at positions 0..T-1, as the decoder's forward does."""
    torch, _ = require_torch()
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None].expand(hidden.shape[0], -1)
    rotary = decoder.rotary_emb(hidden, position_ids=positions)
    bias = causal_bias(attention_mask, hidden.dtype)
    for layer in layers:
        output = layer(hidden, attention_mask=bias, position_embeddings=rotary, position_ids=positions)
        hidden = output[0] if isinstance(output, tuple) else output
    return hidden


def top_forward(model: Any, trunk_states: Any, attention_mask: Any, boundary: int) -> Any:
    """The final hidden states [B, T, H] (after the norm) from the states entering ``boundary``."""
    decoder = decoder_of(model)
    hidden = run_layers(decoder, trunk_states, attention_mask, decoder.layers[boundary:])
    return decoder.norm(hidden)


def bottom_forward(model: Any, input_ids: Any, attention_mask: Any, boundary: int) -> Any:
    """The hidden states entering layer ``boundary`` [B, T, H], without gradient."""
    torch, _ = require_torch()
    decoder = decoder_of(model)
    with torch.no_grad():
        hidden = decoder.embed_tokens(input_ids)
        return run_layers(decoder, hidden, attention_mask, decoder.layers[:boundary])


def with_trunk_states(
    model: Any, trajectories: Sequence[Trajectory], boundary: int, pad_id: int, micro_batch_size: int = 8
) -> list[Trajectory]:
    """The trajectories, each carrying its trunk states; those missing them get one no-grad pass."""
    from agents.lm.trajectory import pad_batch

    out = list(trajectories)
    missing = [i for i, t in enumerate(trajectories) if t.trunk_states is None]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        by_length = sorted(missing, key=lambda i: len(trajectories[i].token_ids))
        for start in range(0, len(by_length), micro_batch_size):
            rows = by_length[start : start + micro_batch_size]
            batch = pad_batch([trajectories[i] for i in rows], pad_id, device=device)
            states = bottom_forward(model, batch["input_ids"], batch["attention_mask"], boundary)
            for j, i in enumerate(rows):
                length = len(trajectories[i].token_ids)
                out[i] = replace(trajectories[i], trunk_states=states[j, :length].clone())
    finally:
        model.train(was_training)
    return out


class TrunkRecorder:
    """A forward hook that hands each run's hidden states entering layer ``boundary`` to a sink.

    ``LMPolicy`` sets ``sink`` before each forward it makes and reads the states right after;
    the hook is removed by ``close``.
    """

    def __init__(self, model: Any, boundary: int) -> None:
        """Hook the module whose output enters layer ``boundary`` (the embeddings for 0)."""
        decoder = decoder_of(model)
        module = decoder.embed_tokens if boundary == 0 else decoder.layers[boundary - 1]
        self.boundary = boundary
        self.last: Any = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        self.last = output[0] if isinstance(output, tuple) else output

    def take(self) -> Any:
        """The states of the last forward [rows, new tokens, H]; cleared for the next."""
        states, self.last = self.last, None
        if states is None:
            raise RuntimeError(f"no hidden states reached the hook on layer {self.boundary}")
        return states

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()
