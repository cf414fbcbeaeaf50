"""A Hugging Face causal LM as a batched ``Policy``: KV-cached generation with per-token log-probs.

How one ``act`` call works, for the envs (slots) it is given:

1. Each slot's new segment (the prompt on a reset, else the last observation; see
   ``agents.lm.chat``) is appended to the slot's token history, trimmed if the context
   budget requires it.
2. Prefill, one slot at a time, on top of that slot's own KV cache: only the tokens the
   cache does not hold yet are run (the new segment plus the previous turn's end-of-turn
   token). No padding, so no wasted compute. A token history equal to a recent one (a GRPO
   group's prompt, its members' identical turns) takes that one's cache and logits instead
   (``PrefixCache``), not recomputed; one that starts like it (the template before each
   question) takes the shared prefix's cache and runs the rest.
3. Decode all slots together. The slots' caches are left-padded into one preallocated
   buffer; a 4-D attention mask hides the padding and each row carries its own position
   ids. Every step samples one token per unfinished row with a seeded ``torch.Generator``.
   A row stops at its first closing action tag (``</search>``, ``</read>``, ``</answer>``),
   at an end-of-turn/EOS token, or after ``max_new_tokens``. A row stopped by a tag or by
   the budget gets the end-of-turn token appended; its log-prob comes from one more decode
   step that also puts the last sampled token in the cache. Sampling and log-prob gathers
   are batched tensor ops; each step moves data between host and device once each way
   (the sampled tokens and their log-probs to the host, which must read the text for
   closing tags; the next inputs back).
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
from agents.lm.kv_cache import DecodeBatch, LayerCache, PrefixCache, weights_version
from agents.lm.models import require_torch
from agents.lm.tokens import ContextBudget, EpisodeTokens, closing_token_ids, context_limit
from agents.lm.trunk import TrunkRecorder
from agents.policy import info_list, slot

CLOSING_TAG = re.compile(r"</(?:search|read|answer)>")


@dataclass
class SlotState:
    """One env's running episode: its token record and the KV cache of its first ``cached`` tokens."""

    record: EpisodeTokens = field(default_factory=EpisodeTokens)
    cache: LayerCache | None = None  # per layer (keys, values), [1, heads, cached, dim]
    cached: int = 0
    trunk: list[Any] = field(default_factory=list)  # recorded trunk states, [tokens, H] chunks


@dataclass
class GenerationStats:
    """Running totals of where generation time goes (reset them by assigning a new instance).

    ``*_seconds`` are wall-clock; ``*_cpu_seconds`` are this process's CPU time (all threads),
    the comparable figure on a shared CPU. On a GPU, wall-clock is the one that counts.
    """

    prefill_seconds: float = 0.0
    prefill_cpu_seconds: float = 0.0
    prefill_tokens: int = 0  # tokens run through the model by prefills
    shared_prompt_tokens: int = 0  # prompt and turn tokens taken from the prefix cache instead
    decode_seconds: float = 0.0
    decode_cpu_seconds: float = 0.0
    decode_steps: int = 0  # batched forward steps
    generated_tokens: int = 0  # sampled tokens plus appended end-of-turn tokens

    @property
    def decode_tokens_per_second(self) -> float:
        """Generated tokens per second of decoding (wall-clock)."""
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
        prefix_cache_size: int = 32,
        record_trunk: int | None = None,
        name: str = "lm",
    ) -> None:
        """Wrap ``model``; ``record_trunk=b`` records layer ``b``'s input states (``agents.lm.trunk``)."""
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
        self.prefix_cache = PrefixCache(prefix_cache_size)
        self._may_close = closing_token_ids(tokenizer)
        self.record_trunk = record_trunk
        self._recorder: TrunkRecorder | None = None
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
        infos = info_list(infos, len(observations))
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
        if state.trunk:
            torch, _ = require_torch()
            state.record.trunk_states = torch.cat(state.trunk)
        return state.record

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, states: list[SlotState]) -> list[str]:
        torch, _ = require_torch()
        was_training = self.model.training
        self.model.eval()
        if self.record_trunk is not None:
            self._recorder = TrunkRecorder(self.model, self.record_trunk)
        try:
            with torch.no_grad():
                started, cpu_started = time.perf_counter(), time.process_time()
                version = weights_version(self.model)
                first_logits = torch.cat([self._prefill(state, version) for state in states])
                decoding, cpu_decoding = time.perf_counter(), time.process_time()
                self.stats.prefill_seconds += decoding - started
                self.stats.prefill_cpu_seconds += cpu_decoding - cpu_started
                generated_before = sum(state.record.n_generated for state in states)
                texts = self._decode(states, first_logits)
                self.stats.decode_seconds += time.perf_counter() - decoding
                self.stats.decode_cpu_seconds += time.process_time() - cpu_decoding
                self.stats.generated_tokens += (
                    sum(state.record.n_generated for state in states) - generated_before
                )
                return texts
        finally:
            self.model.train(was_training)
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None

    def _prefill(self, state: SlotState, version: int) -> Any:
        """Run the slot's uncached tokens on top of its cache; return the last logits [1, V].

        A slot whose token history is in the prefix cache takes the cached tensors instead; one
        whose history starts like a cached one beyond its own cache takes that prefix and runs
        only the rest (``PrefixCache``).
        """
        torch, transformers = require_torch()
        history = state.record.token_ids
        shared = self.prefix_cache.lookup(history, version, self._recorder is not None, state.cached)
        if shared is not None:
            self.stats.shared_prompt_tokens += shared[0] - state.cached
            state.cached, state.cache, logits, trunk = shared
            state.trunk = [trunk] if trunk is not None else []
            if logits is not None:  # the whole history was cached
                return logits
        new_tokens = history[state.cached :]
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
        self.stats.prefill_tokens += len(new_tokens)
        logits = output.logits[:, -1].float()
        trunk = self._recorder.take()[0] if self._recorder is not None else None
        if trunk is not None:
            state.trunk.append(trunk)
        self.prefix_cache.put(history, version, state.cache, logits, state.trunk)
        return logits

    def _decode(self, states: list[SlotState], logits: Any) -> list[str]:
        """Sample every slot's action together; ``logits`` [N, V] are the prefill's last logits."""
        torch, _ = require_torch()
        batch = DecodeBatch.start(states, self.max_new_tokens + 1, self.model.dtype)
        mask_value = torch.finfo(self.model.dtype).min
        texts = [""] * len(states)
        while True:
            tokens, logprobs, end_logprobs = self._draw(logits, batch)
            for position, logprob in zip(batch.ending, end_logprobs, strict=True):
                index = batch.rows[position]
                batch.logprobs[index].append(logprob)
                batch.closing[index] = False
            if not batch.sampling:
                break
            for position, token, logprob in zip(batch.sampling, tokens, logprobs, strict=True):
                index = batch.rows[position]
                batch.generated[index].append(token)
                batch.logprobs[index].append(logprob)
                if token in self.format.stop_token_ids:
                    batch.active[index] = False
                elif self._stops(batch.generated[index]):
                    batch.active[index] = False
                    batch.closing[index] = True
            fed = batch.fed()
            if not any(fed):  # every row ended with an end token: nothing left to run
                break
            compact = 2 * fed.count(False) >= len(fed)
            if compact:
                # Half the rows are done: drop them so the rest stop paying for their padding.
                for position in (p for p, row_fed in enumerate(fed) if not row_fed):
                    texts[batch.rows[position]] = self._finish(batch, position)
            logits = self._forward_step(batch, *batch.next_inputs(self.pad_id, compact), mask_value)
        for position in range(len(batch.rows)):
            texts[batch.rows[position]] = self._finish(batch, position)
        return texts

    def _draw(self, logits: Any, batch: DecodeBatch) -> tuple[list[int], list[float], list[float]]:
        """Sample the batch's sampling rows; their tokens, log-probs and the ending rows' end log-probs.

        The tokens and log-probs are gathered on the device and reach the host in one transfer.
        """
        torch, _ = require_torch()
        log_dist = torch.log_softmax(logits / self.logprob_temperature, dim=-1)
        parts = []
        if batch.sampling:
            if batch.sampling_rows is None or len(batch.sampling) == logits.shape[0]:
                tokens = self._sample(logits)
                picked = log_dist.gather(1, tokens[:, None]).squeeze(1)
            else:
                tokens = self._sample(logits.index_select(0, batch.sampling_rows))
                picked = log_dist[batch.sampling_rows, tokens]
            parts += [tokens.to(torch.float64), picked.to(torch.float64)]
        if batch.ending:
            parts.append(log_dist[batch.ending_rows, self.format.end_of_turn_id].to(torch.float64))
        values: list[float] = torch.cat(parts).tolist() if parts else []
        count = len(batch.sampling)
        return [int(t) for t in values[:count]], values[count : 2 * count], values[2 * count :]

    def _stops(self, generated: list[int]) -> bool:
        """Whether an action ends after its last (non-end) token: a closing tag, or the budget.

        A closing tag ends with ``>``, so the text can only gain one when the new token holds
        ``>``; other tokens skip decoding the action.
        """
        if len(generated) >= self.max_new_tokens:
            return True
        if self._may_close is not None and generated[-1] not in self._may_close:
            return False
        return CLOSING_TAG.search(self.format.decode_action(generated)) is not None

    def _forward_step(
        self, batch: DecodeBatch, inputs: Any, positions: Any, fed: Any, mask_value: float
    ) -> Any:
        """One decode step: fed rows add their token; the others add a pad that only sees itself."""
        column = batch.column
        batch.bias[:, :, :, column] = 0.0
        output = self.model(
            input_ids=inputs[:, None],
            attention_mask=batch.bias[:, :, :, : column + 1],
            position_ids=positions[:, None],
            use_cache=True,
            **cache_kwargs(self.model, batch.cache),
        )
        batch.bias[:, 0, 0, column].masked_fill_(~fed, mask_value)  # later steps must not see a pad
        if self._recorder is not None:
            states = self._recorder.take()
            for position, row_fed in enumerate(batch.fed()):
                if row_fed:
                    batch.states[batch.rows[position]].trunk.append(states[position])
        batch.column += 1
        self.stats.decode_steps += 1
        return output.logits[:, -1].float()

    def _finish(self, batch: DecodeBatch, position: int) -> str:
        """Commit a finished row: its tokens and log-probs, and its real cache columns."""
        index = batch.rows[position]
        state, tokens = batch.states[index], batch.generated[index]
        ended = tokens[-1] in self.format.stop_token_ids
        committed = tokens if ended else [*tokens, self.format.end_of_turn_id]
        cached = state.cached + len(tokens) - int(ended)  # every token but an end token was fed
        state.record.extend(committed, generated=True, logprobs=batch.logprobs[index])
        state.cache = batch.real_cache(position, cached)
        state.cached = cached
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
