"""KV caches for batched decoding: per-slot caches left-padded into one preallocated buffer.

``LMPolicy`` keeps one cache per env slot between turns. To decode several slots together,
``left_padded_cache`` stacks them right-aligned into buffers with room for the new tokens, and
``DecodeBatch`` tracks which rows still decode; ``slab_layer_class`` is a cache layer that
writes each new token in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.lm.models import require_torch

if TYPE_CHECKING:
    from agents.lm.policy import SlotState


@dataclass
class DecodeBatch:
    """The rows still decoding: ``rows[p]`` is the index (into ``states``) of batch row ``p``.

    Per-slot lists (``generated``, ``logprobs``, ``active``, ``closing``) are indexed by
    slot index; tensors (``key_real``, ``next_position``, the cache) by batch row.
    """

    states: list[SlotState]
    cache: Any
    key_real: Any  # [rows, capacity] bool: which cache columns hold real tokens
    next_position: Any  # [rows] long: the position id of each row's next token
    column: int  # cache columns written so far
    rows: list[int] = field(default_factory=list)
    generated: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float]] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)  # still sampling
    closing: list[bool] = field(default_factory=list)  # stopped by a tag or the budget: end token next

    def __post_init__(self) -> None:
        count = len(self.states)
        self.rows = list(range(count))
        self.generated = [[] for _ in range(count)]
        self.logprobs = [[] for _ in range(count)]
        self.active = [True] * count
        self.closing = [False] * count

    def select(self, keep: Any) -> None:
        """Keep only the batch rows in ``keep`` (a long tensor of row positions)."""
        _, transformers = require_torch()
        slab_layer = slab_layer_class()
        self.cache = transformers.cache_utils.Cache(
            layers=[
                slab_layer(
                    layer.key_buffer.index_select(0, keep),
                    layer.value_buffer.index_select(0, keep),
                    layer.length,
                )
                for layer in self.cache.layers
            ]
        )
        self.key_real = self.key_real.index_select(0, keep)
        self.next_position = self.next_position.index_select(0, keep)
        self.rows = [self.rows[position] for position in keep.tolist()]


_SLAB_LAYER: Any = None


def slab_layer_class() -> Any:
    """A KV-cache layer over a preallocated buffer, so a decode step writes in place.

    transformers' ``DynamicLayer`` concatenates on every step, which copies the whole batch
    cache per token; this layer keeps the cost of a step proportional to the new token only.
    """
    global _SLAB_LAYER
    if _SLAB_LAYER is None:
        from transformers.cache_utils import DynamicLayer

        class SlabLayer(DynamicLayer):
            def __init__(self, keys: Any, values: Any, length: int) -> None:
                super().__init__()
                self.key_buffer, self.value_buffer = keys, values
                self.dtype, self.device = keys.dtype, keys.device
                self.is_initialized = True
                self.length = length
                self._refresh_views()

            def _refresh_views(self) -> None:
                self.keys = self.key_buffer[:, :, : self.length]
                self.values = self.value_buffer[:, :, : self.length]

            def update(
                self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any
            ) -> tuple[Any, Any]:
                end = self.length + key_states.shape[-2]
                if end > self.key_buffer.shape[-2]:
                    raise RuntimeError("decode ran past the preallocated KV buffer")
                self.key_buffer[:, :, self.length : end] = key_states
                self.value_buffer[:, :, self.length : end] = value_states
                self.length = end
                self._refresh_views()
                return self.keys, self.values

            def get_seq_length(self) -> int:
                return self.length

            def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
                return self.length + query_length, 0

        _SLAB_LAYER = SlabLayer
    return _SLAB_LAYER


def left_padded_cache(states: list[SlotState], width: int, capacity: int) -> tuple[Any, Any]:
    """Stack the slots' caches right-aligned at ``width`` into buffers of ``capacity`` columns."""
    torch, transformers = require_torch()
    rows = len(states)
    caches = [state.cache or [] for state in states]
    device = caches[0][0][0].device if caches[0] else None
    key_real = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
    slab_layer = slab_layer_class()
    layers = []
    for layer_index in range(len(caches[0])):
        sample_keys, sample_values = caches[0][layer_index]
        keys = sample_keys.new_zeros(rows, sample_keys.shape[1], capacity, sample_keys.shape[3])
        values = sample_values.new_zeros(rows, sample_values.shape[1], capacity, sample_values.shape[3])
        for row, (state, cache) in enumerate(zip(states, caches, strict=True)):
            row_keys, row_values = cache[layer_index]
            keys[row, :, width - state.cached : width] = row_keys[0]
            values[row, :, width - state.cached : width] = row_values[0]
        layers.append(slab_layer(keys, values, width))
    for row, state in enumerate(states):
        key_real[row, width - state.cached : width] = True
    return transformers.cache_utils.Cache(layers=layers), key_real
