"""A Hugging Face causal LM as a batched ``Policy``: KV-cached generation with per-token log-probs.

How one ``act`` call works, for the envs (slots) it is given:

1. Each slot's new segment (the prompt on a reset, else the last observation; see
   ``agents.lm.chat``) is appended to the slot's token history, trimmed if the context
   budget requires it.
2. Prefill, one slot at a time, on top of that slot's own KV cache: only the tokens the
   cache does not hold yet are run (the new segment plus the previous turn's end-of-turn
   token). No padding, so no wasted compute.
3. Decode all slots together. The slots' caches are left-padded into one preallocated
   buffer; a 4-D attention mask hides the padding and each row carries its own position
   ids. Every step samples one token per unfinished row with a seeded ``torch.Generator``.
   A row stops at its first closing action tag (``</search>``, ``</read>``, ``</answer>``),
   at an end-of-turn/EOS token, or after ``max_new_tokens``. A row stopped by a tag or by
   the budget gets the end-of-turn token appended; its log-prob comes from one more decode
   step that also puts the last sampled token in the cache.
4. Each row's real cache entries are cut back out of the buffer and kept for the next turn.

Log-probs: ``log_softmax(logits / T)`` of the chosen token, where ``T`` is
``logprob_temperature`` (the sampling temperature; 1.0 when greedy). top-p is not folded
in: the value is the model's tempered distribution, which is what a trainer recomputes with
``sequence_logprobs(model, batch, temperature=T)``.

Supports decoder-only models with full attention in every layer (Llama, SmolLM2, Qwen2...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.lm.chat import ChatFormat, chat_format
from agents.lm.compat import cache_kwargs, output_cache
from agents.lm.kv_cache import DecodeBatch, left_padded_cache
from agents.lm.models import require_torch
from agents.lm.tokens import ContextBudget, EpisodeTokens, context_limit
from agents.policy import slot

CLOSING_TAG = re.compile(r"</(?:search|read|answer)>")


@dataclass
class SlotState:
    """One env's running episode: its token record and the KV cache of its first ``cached`` tokens."""

    record: EpisodeTokens = field(default_factory=EpisodeTokens)
    cache: list[tuple[Any, Any]] | None = None  # per layer (keys, values), [1, heads, cached, dim]
    cached: int = 0


@dataclass
class GenerationStats:
    """Running totals of where generation time goes (reset them by assigning a new instance)."""

    prefill_seconds: float = 0.0
    prefill_tokens: int = 0
    decode_seconds: float = 0.0
    decode_steps: int = 0  # batched forward steps
    generated_tokens: int = 0  # sampled tokens plus appended end-of-turn tokens

    @property
    def decode_tokens_per_second(self) -> float:
        """Generated tokens per second of decoding."""
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


class LMPolicy:
    """A causal LM that plays SearchQA: ``act`` generates one action per env, batched.

    Per-env state is keyed by slot (``agents.policy.slot``): ``info["slot"]`` when present,
    else the position in the batch. ``pop_episode(i)`` hands over slot ``i``'s token record
    (call it when the episode ends); ``reset`` forgets slots.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        seed: int = 0,
        max_context_tokens: int | None = None,
        observation_role: str = "user",
        name: str = "lm",
    ) -> None:
        torch, _ = require_torch()
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature} (use greedy=True)")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.max_context_tokens = context_limit(model, max_context_tokens)
        if self.max_context_tokens < max_new_tokens + 64:
            raise ValueError(
                f"max_context_tokens={self.max_context_tokens} leaves no room for a prompt "
                f"and {max_new_tokens} new tokens"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.format: ChatFormat = chat_format(tokenizer, observation_role)
        self.budget = ContextBudget(self.format, self.max_context_tokens, max_new_tokens)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.greedy = greedy
        self.seed = seed
        self.name = name
        # Sampling draws on the model's device, so the generator must live there too.
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.format.end_of_turn_id
        )
        self._slots: dict[int, SlotState] = {}
        self._exhausted: set[int] = set()
        self.stats = GenerationStats()

    @property
    def logprob_temperature(self) -> float:
        """The temperature the recorded log-probs were computed at (1.0 when greedy)."""
        return 1.0 if self.greedy else self.temperature

    # -- Policy protocol -----------------------------------------------------------------------

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Forget the episodes (tokens and caches) of the given slots, or of all slots."""
        if indices is None:
            self._slots.clear()
            self._exhausted.clear()
            return
        for index in indices:
            self._slots.pop(int(index), None)
            self._exhausted.discard(int(index))

    def act(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> list[str]:
        """One action per observation. ``infos`` may also be a gymnasium vector env's dict."""
        infos = _info_list(infos, len(observations))
        if len(infos) != len(observations):
            raise ValueError(f"{len(observations)} observations but {len(infos)} infos")
        slots = [slot(info, position) for position, info in enumerate(infos)]
        if len(set(slots)) != len(slots):
            raise ValueError(f"two observations claim the same slot: {slots}")
        actions = [""] * len(observations)
        runnable: list[tuple[int, SlotState]] = []
        for position, (key, observation, info) in enumerate(zip(slots, observations, infos, strict=True)):
            if not isinstance(observation, str):
                raise TypeError(f"observation {position} is {type(observation).__name__}, not str")
            state = self._slots.get(key)
            if state is None or info.get("turn") == 0 or not state.record.token_ids:
                state = self._slots[key] = SlotState()
                self._exhausted.discard(key)
                fitted = self.budget.prompt(observation)
            elif key in self._exhausted:
                continue
            else:
                fitted = self.budget.observation(len(state.record.token_ids), observation)
            if fitted is None:
                # Out of context: answer with an empty (invalid) action until the budget ends the episode.
                self._exhausted.add(key)
                state.record.context_exhausted = True
                continue
            state.record.extend(fitted, generated=False)
            runnable.append((position, state))
        if runnable:
            texts = self._generate([state for _, state in runnable])
            for (position, _), text in zip(runnable, texts, strict=True):
                actions[position] = text
        return actions

    def pop_episode(self, index: int) -> EpisodeTokens:
        """Return slot ``index``'s token record and forget the slot."""
        state = self._slots.pop(int(index), None)
        self._exhausted.discard(int(index))
        if state is None:
            raise KeyError(f"slot {index} has no episode: act() was never called for it since its last reset")
        return state.record

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, states: list[SlotState]) -> list[str]:
        torch, _ = require_torch()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                started = time.perf_counter()
                before = sum(len(state.record.token_ids) - state.cached for state in states)
                first_logits = torch.cat([self._prefill(state) for state in states])
                decoding = time.perf_counter()
                self.stats.prefill_seconds += decoding - started
                self.stats.prefill_tokens += before
                generated_before = sum(state.record.n_generated for state in states)
                texts = self._decode(states, first_logits)
                self.stats.decode_seconds += time.perf_counter() - decoding
                self.stats.generated_tokens += (
                    sum(state.record.n_generated for state in states) - generated_before
                )
                return texts
        finally:
            self.model.train(was_training)

    def _prefill(self, state: SlotState) -> Any:
        """Run the slot's uncached tokens on top of its cache; return the last logits [1, V]."""
        torch, transformers = require_torch()
        new_tokens = state.record.token_ids[state.cached :]
        past = (
            transformers.DynamicCache(ddp_cache_data=state.cache)
            if state.cache
            else transformers.DynamicCache()
        )
        output = self.model(
            input_ids=torch.tensor([new_tokens], device=self.device),
            position_ids=torch.arange(state.cached, state.cached + len(new_tokens), device=self.device)[None],
            use_cache=True,
            logits_to_keep=1,
            **cache_kwargs(self.model, past),
        )
        cache = output_cache(output)
        state.cache = [(layer.keys, layer.values) for layer in cache.layers]
        state.cached += len(new_tokens)
        return output.logits[:, -1].float()

    def _decode(self, states: list[SlotState], logits: Any) -> list[str]:
        """Sample every slot's action together; ``logits`` [N, V] are the prefill's last logits."""
        torch, _ = require_torch()
        lengths = [state.cached for state in states]
        width = max(lengths)
        cache, key_real = left_padded_cache(states, width, width + self.max_new_tokens + 1)
        batch = DecodeBatch(states, cache, key_real, torch.tensor(lengths, device=self.device), column=width)
        end_id = self.format.end_of_turn_id
        mask_value = torch.finfo(self.model.dtype).min
        texts = [""] * len(states)
        while True:
            log_dist = torch.log_softmax(logits / self.logprob_temperature, dim=-1)
            for position, index in enumerate(batch.rows):
                if batch.closing[index]:
                    batch.logprobs[index].append(float(log_dist[position, end_id]))
                    batch.closing[index] = False
            sampling = [position for position, index in enumerate(batch.rows) if batch.active[index]]
            if not sampling:
                break
            fed = torch.zeros(len(batch.rows), dtype=torch.bool, device=self.device)
            step_input = torch.full((len(batch.rows), 1), self.pad_id, dtype=torch.long, device=self.device)
            for position, token in zip(sampling, self._sample(logits[sampling]).tolist(), strict=True):
                index = batch.rows[position]
                batch.generated[index].append(token)
                batch.logprobs[index].append(float(log_dist[position, token]))
                if token in self.format.stop_token_ids:
                    batch.active[index] = False
                    continue
                fed[position] = True
                step_input[position, 0] = token
                text = self.format.decode_action(batch.generated[index])
                if CLOSING_TAG.search(text) or len(batch.generated[index]) >= self.max_new_tokens:
                    batch.active[index] = False
                    batch.closing[index] = True
            if not fed.any():  # every row ended with an end token: nothing left to run
                break
            if 2 * int((~fed).sum()) >= len(batch.rows):
                # Half the rows are done: drop them so the rest stop paying for their padding.
                for position in (~fed).nonzero().squeeze(1).tolist():
                    texts[batch.rows[position]] = self._finish(batch, position)
                keep = fed.nonzero().squeeze(1)
                batch.select(keep)
                fed, step_input = fed[keep], step_input[keep]
            # One decode step: fed rows add their token; the others add a pad that only sees itself.
            column = batch.column
            batch.key_real[:, column] = fed
            visible = batch.key_real[:, : column + 1].clone()
            visible[:, column] = True
            attention = torch.zeros(
                len(batch.rows), 1, 1, column + 1, dtype=self.model.dtype, device=self.device
            )
            attention.masked_fill_(~visible[:, None, None, :], mask_value)
            positions = torch.where(fed, batch.next_position, torch.zeros_like(batch.next_position))
            output = self.model(
                input_ids=step_input,
                attention_mask=attention,
                position_ids=positions[:, None],
                use_cache=True,
                **cache_kwargs(self.model, batch.cache),
            )
            logits = output.logits[:, -1].float()
            batch.next_position += fed.long()
            batch.column += 1
            self.stats.decode_steps += 1
        for position, index in enumerate(batch.rows):
            texts[index] = self._finish(batch, position)
        return texts

    def _finish(self, batch: DecodeBatch, position: int) -> str:
        """Commit a finished row: its tokens and log-probs, and its real cache columns."""
        index = batch.rows[position]
        state, tokens = batch.states[index], batch.generated[index]
        committed = (
            tokens if tokens[-1] in self.format.stop_token_ids else [*tokens, self.format.end_of_turn_id]
        )
        state.record.extend(committed, generated=True, logprobs=batch.logprobs[index])
        keep = batch.key_real[position, : batch.column].nonzero().squeeze(1)
        state.cache = [
            (
                layer.keys[position : position + 1, :, keep].clone(),
                layer.values[position : position + 1, :, keep].clone(),
            )
            for layer in batch.cache.layers
        ]
        state.cached = len(keep)
        if state.cached != len(state.record.token_ids) - 1:  # all but the end token are cached
            raise RuntimeError(f"cache bookkeeping error: {state.cached} vs {len(state.record.token_ids)}")
        return self.format.decode_action(tokens)

    def _sample(self, logits: Any) -> Any:
        """One token per row: argmax when greedy, else tempered top-p sampling with our generator."""
        torch, _ = require_torch()
        if self.greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)


def _info_list(
    infos: Sequence[Mapping[str, Any]] | Mapping[str, Any], count: int
) -> Sequence[Mapping[str, Any]]:
    """Per-env infos from a list, or from a gymnasium vector env's dict of arrays."""
    if not isinstance(infos, Mapping):
        return list(infos)
    per_env: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, values in infos.items():
        if key.startswith("_") or isinstance(values, Mapping):
            continue
        present = infos.get(f"_{key}")
        for index in range(count):
            if present is None or bool(present[index]):
                value = values[index]
                per_env[index][key] = value.item() if hasattr(value, "item") else value
    return per_env
