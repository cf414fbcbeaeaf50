"""KV caches for batched decoding: per-slot caches left-padded into one preallocated buffer.

``LMPolicy`` keeps one cache per env slot between turns. To decode several slots together,
``DecodeBatch.start`` stacks them right-aligned into buffers with room for the new tokens, with
an additive attention mask that hides the padding; ``slab_layer_class`` is a cache layer that
writes each new token in place. ``PrefixCache`` remembers the caches of recent token histories,
so the episodes of a GRPO group (which share their prompt, and often their first turns) prefill
them once, and every other episode prefills only what its history does not share with one
remembered (the chat template and the instructions before the question).

Cached tensors are never written in place once a slot holds them (the slab buffers are copies,
and transformers' ``DynamicLayer`` grows a cache by concatenation), so slots may share them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.lm.models import require_torch

if TYPE_CHECKING:
    from agents.lm.policy import SlotState

LayerCache = list[tuple[Any, Any]]  # per layer (keys, values), [1, heads, tokens, dim]
SHARING = ("prompts", "histories", "prefixes")  # what a PrefixCache reuses, least to most


@dataclass
class DecodeBatch:
    """The rows still decoding: ``rows[p]`` is the index (into ``states``) of batch row ``p``.

    Per-slot lists (``generated``, ``logprobs``, ``active``, ``closing``, ``first_column``) are
    indexed by slot index; ``sampling`` and ``ending`` hold batch positions (the rows the next
    step samples, and those stopped by a tag or the budget that get their end-of-turn
    log-prob), ``sampling_rows`` and ``ending_rows`` the same positions on the device;
    tensors (``bias``, the cache) are indexed by batch row. A slot's real cache columns are
    contiguous: its old tokens end at the first decode column and every decode step until it
    stops adds one, so ``first_column`` and its token count locate them without reading the
    device.
    """

    states: list[SlotState]
    cache: Any
    bias: Any  # [rows, 1, 1, capacity]: 0 on columns a row may attend to, the dtype's min elsewhere
    column: int  # cache columns written so far
    rows: list[int] = field(default_factory=list)
    generated: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float]] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)  # still sampling
    closing: list[bool] = field(default_factory=list)  # stopped by a tag or the budget: end token next
    first_column: list[int] = field(default_factory=list)
    sampling: list[int] = field(default_factory=list)
    ending: list[int] = field(default_factory=list)
    sampling_rows: Any = None  # None: every row
    ending_rows: Any = None

    def __post_init__(self) -> None:
        count = len(self.states)
        self.rows = list(range(count))
        self.generated = [[] for _ in range(count)]
        self.logprobs = [[] for _ in range(count)]
        self.active = [True] * count
        self.closing = [False] * count
        self.first_column = [self.column - state.cached for state in self.states]
        self.sampling = list(range(count))

    @classmethod
    def start(cls, states: list[SlotState], new_columns: int, dtype: Any) -> DecodeBatch:
        """The slots' caches right-aligned at the longest one, with ``new_columns`` free columns."""
        torch, _ = require_torch()
        width = max(state.cached for state in states)
        cache = left_padded_cache(states, width, width + new_columns)
        device = cache.layers[0].key_buffer.device
        bias = torch.full((len(states), 1, 1, width + new_columns), torch.finfo(dtype).min, dtype=dtype)
        for row, state in enumerate(states):
            bias[row, :, :, width - state.cached : width] = 0.0
        return cls(states, cache, bias.to(device), width)

    def fed(self) -> list[bool]:
        """Per batch row: whether its last sampled token goes into the cache at the next step."""
        return [self.active[index] or self.closing[index] for index in self.rows]

    def next_inputs(self, pad_id: int, compact: bool) -> tuple[Any, Any, Any]:
        """The next step's (input ids, position ids, fed mask) [rows], on the device.

        With ``compact``, the rows not fed leave the batch first (commit them before). Every
        per-step input, including the positions the step after samples or ends, crosses to
        the device in one transfer.
        """
        torch, _ = require_torch()
        fed = self.fed()
        keep = [position for position, row_fed in enumerate(fed) if row_fed or not compact]
        inputs, positions = [], []
        for position in keep:
            index = self.rows[position]
            inputs.append(self.generated[index][-1] if fed[position] else pad_id)
            positions.append(
                self.states[index].cached + len(self.generated[index]) - 1 if fed[position] else 0
            )
        self.rows = [self.rows[position] for position in keep]
        self.sampling = [p for p, index in enumerate(self.rows) if self.active[index]]
        self.ending = [p for p, index in enumerate(self.rows) if self.closing[index]]
        host = [inputs, positions, [int(fed[position]) for position in keep]]
        host += [_padded(self.sampling, len(keep)), _padded(self.ending, len(keep)), keep]
        step = torch.tensor(host, dtype=torch.long, device=self.bias.device)
        if len(keep) < len(fed):
            self.select(step[5])
        self.sampling_rows, self.ending_rows = step[3, : len(self.sampling)], step[4, : len(self.ending)]
        return step[0], step[1], step[2].bool()

    def select(self, keep: Any) -> None:
        """Keep only the batch rows in ``keep`` (a long tensor of row positions, on the device)."""
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
        self.bias = self.bias.index_select(0, keep)

    def real_cache(self, position: int, length: int) -> LayerCache:
        """Copies of row ``position``'s ``length`` real cache columns, per layer."""
        index = self.rows[position]
        start, stop = self.first_column[index], self.first_column[index] + length
        if stop > self.column:
            raise RuntimeError(f"cache bookkeeping error: {length} tokens past column {self.column}")
        return [
            (
                layer.key_buffer[position : position + 1, :, start:stop].clone(),
                layer.value_buffer[position : position + 1, :, start:stop].clone(),
            )
            for layer in self.cache.layers
        ]


def _padded(values: list[int], width: int) -> list[int]:
    """``values`` padded with zeros to ``width`` entries (the rows of one tensor)."""
    return values + [0] * (width - len(values))


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


def left_padded_cache(states: list[SlotState], width: int, capacity: int) -> Any:
    """Stack the slots' caches right-aligned at ``width`` into buffers of ``capacity`` columns."""
    _, transformers = require_torch()
    rows = len(states)
    caches = [state.cache or [] for state in states]
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
    return transformers.cache_utils.Cache(layers=layers)


class PrefixCache:
    """The KV caches, last logits and trunk states of recent token histories, keyed by their ids.

    A history's cache depends only on its tokens and the weights, so an equal history (the
    prompt of a GRPO group's members, and their turns while they act alike; a repeated
    question) reuses the entry: the same tensors a prefill would compute, without running it.
    A history that only starts like a remembered one (the chat template and instructions
    before each question) reuses that entry's cache cut to the shared prefix: in a causal
    model a prefix's keys, values and states do not depend on what follows (equal up to float
    rounding, since a longer prefill groups its sums otherwise). Entries are dropped when the
    weights change: the weights' version (the sum of the parameters' in-place update
    counters, which an optimizer step or a load advances) is part of the lookup.
    """

    def __init__(self, size: int, sharing: str = "prefixes", min_prefix: int = 16) -> None:
        """Keep at most ``size`` histories (0 keeps none), shared as ``sharing`` says.

        ``sharing`` (``SHARING``): ``prompts``, whole equal prompts only; ``histories``, also
        whole equal histories at any turn (both bitwise); ``prefixes``, also the longest shared
        prefix of ``min_prefix`` tokens or more (up to round-off).
        """
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {sharing!r}")
        self.size = size
        self.sharing = sharing
        self.min_prefix = min_prefix
        self._entries: OrderedDict[tuple[int, ...], tuple[LayerCache, Any, Any]] = OrderedDict()
        self._version: int | None = None

    def _current(self, version: int) -> None:
        if version != self._version:
            self._entries.clear()
            self._version = version

    def lookup(
        self, tokens: Sequence[int], version: int, with_trunk: bool = False, held: int = 0
    ) -> tuple[int, LayerCache, Any, Any] | None:
        """What it holds of ``tokens`` beyond their ``held`` first: (tokens covered, cache, logits, trunk).

        The whole history gives its last logits [1, V]; otherwise (``prefixes``) the longest
        shorter prefix a remembered history starts with, its cache and trunk states cut to it,
        and logits None (the rest must be prefilled). None when nothing beyond ``held`` tokens
        (and at least ``min_prefix``) is shared, or when ``prompts`` are shared and ``held`` > 0.
        ``with_trunk`` asks for entries that also hold the trunk states (``agents.lm.trunk``);
        one stored without them is passed over.
        """
        self._current(version)
        if held and self.sharing == "prompts":
            return None
        key = tuple(tokens)
        entry = self._entries.get(key)
        if entry is not None and not (with_trunk and entry[2] is None):
            self._entries.move_to_end(key)
            return len(key), *entry
        if self.sharing != "prefixes":
            return None
        best, best_key = 0, None
        for other, (_, _, trunk) in self._entries.items():
            shared = _common_prefix(other, key)
            if shared > best and not (with_trunk and trunk is None):
                best, best_key = shared, other
        best = min(best, len(key) - 1)  # the last token's logits come from a prefill
        if best_key is None or best < max(self.min_prefix, held + 1):
            return None
        cache, _, trunk = self._entries[best_key]
        cut = [(keys[:, :, :best], values[:, :, :best]) for keys, values in cache]
        return best, cut, None, trunk[:best] if trunk is not None else None

    def put(
        self, tokens: Sequence[int], version: int, cache: LayerCache, logits: Any, trunk: Any = ()
    ) -> None:
        """Remember ``tokens``' cache, last logits and trunk states (chunks along the tokens).

        The entry is valid under ``version``; the oldest one is forgotten when the cache is full.
        """
        torch, _ = require_torch()
        self._current(version)
        if self.size < 1:
            return
        self._entries[tuple(tokens)] = (cache, logits, torch.cat(list(trunk)) if len(trunk) else None)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share.

    >>> _common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    shared = 0
    for x, y in zip(a, b):
        if x != y:
            break
        shared += 1
    return shared


def weights_version(model: Any) -> int:
    """A number that changes whenever any of ``model``'s parameters is modified in place."""
    return sum(parameter._version for parameter in model.parameters())
