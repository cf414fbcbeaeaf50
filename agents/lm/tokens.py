"""The one token path: how an episode becomes the token ids, action mask and log-probs trainers use.

Every episode a trainer sees, sampled by ``LMPolicy`` or demonstrated by a scripted teacher
through ``DemonstrationPolicy``, is recorded here, segment by segment (``agents.lm.chat``):
the prompt, then per turn the observation and the action with its end-of-turn token. Sampled
actions keep the ids the model produced and their behaviour log-probs; demonstrated actions
are their text's canonical encoding with log-prob 0. Both policies expose ``pop_episode(slot)``,
which ``agents.rollout.run_episodes`` calls when an episode ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from agents.lm.chat import ChatFormat, chat_format
from agents.policy import Action, Policy, slot
from searchenv.actions import action_to_text

MIN_OBSERVATION_TOKENS = 16


@dataclass
class EpisodeTokens:
    """The token record of one episode.

    ``token_ids`` is the whole conversation (prompt, actions, observations) in order;
    ``action_mask[t]`` is 1 for tokens the policy wrote (action text and each action's
    end-of-turn token), 0 otherwise; ``logprobs[t]`` is the behaviour log-prob of a sampled
    token, 0.0 where the mask is 0 or the action was demonstrated. ``context_exhausted`` is True
    when the context budget ran out and the later turns got an empty action.
    ``trunk_states`` holds, when the policy recorded them (``agents.lm.trunk``), the hidden
    states entering the first trained layer of every token the policy ran: all but the last.
    """

    token_ids: list[int] = field(default_factory=list)
    action_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    n_generated: int = 0
    context_exhausted: bool = False
    trunk_states: Any = None  # [tokens run, H] hidden states entering the trained layers, if recorded

    def extend(
        self, token_ids: Sequence[int], generated: bool, logprobs: Sequence[float] | None = None
    ) -> None:
        """Append a segment: observation/prompt tokens (``generated=False``) or action tokens."""
        self.token_ids.extend(int(t) for t in token_ids)
        self.action_mask.extend([int(generated)] * len(token_ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(token_ids))
        if generated:
            self.n_generated += len(token_ids)


@dataclass(frozen=True)
class ContextBudget:
    """Fits prompts and observations into a context window that keeps room for the next action."""

    format: ChatFormat
    max_context_tokens: int
    max_new_tokens: int

    def room(self, used: int) -> int:
        """Tokens a new segment may take after ``used`` tokens, keeping room for a full action."""
        return self.max_context_tokens - used - self.max_new_tokens - 1

    def prompt(self, prompt: str) -> list[int] | None:
        """The prompt segment; a prompt that has to be cut keeps its tail (the question is last)."""
        return self._fit(self.format.prompt_ids, prompt, self.room(0), "tail")

    def observation(self, used: int, observation: str) -> list[int] | None:
        """The observation segment after ``used`` tokens, cut at its end if needed; None if no room."""
        return self._fit(self.format.observation_ids, observation, self.room(used), "head")

    def _fit(self, segment: Callable[[str], list[int]], text: str, room: int, keep: str) -> list[int] | None:
        """The segment of ``text``, cut (at ``keep``) to fit in ``room`` tokens; None if it cannot.

        A text that has to be cut gets only half the room when that is still a useful size, so
        the turns after it are not starved.
        """
        ids = segment(text)
        if len(ids) <= room:
            return ids
        if room // 2 >= 4 * MIN_OBSERVATION_TOKENS:
            room //= 2
        content = len(self.format.encode(text))
        overflow = len(ids) - room
        margin = 8  # the marker and re-tokenization at the cut cost a few tokens
        for _ in range(8):
            budget = content - overflow - margin
            if budget < MIN_OBSERVATION_TOKENS:
                return None
            ids = segment(self.format.truncate(text, budget, keep=keep))
            if len(ids) <= room:
                return ids
            margin *= 2
        return None


def context_limit(model: Any, requested: int | None) -> int:
    """The context window to use: ``requested``, or the model's own limit capped at 4,096 tokens."""
    model_limit = int(getattr(model.config, "max_position_embeddings", 4096) or 4096)
    limit = min(model_limit, 4096) if requested is None else requested
    if limit > model_limit:
        raise ValueError(f"max_context_tokens={limit} exceeds the model's {model_limit}")
    return limit


@lru_cache(maxsize=16)
def closing_token_ids(tokenizer: Any) -> frozenset[int] | None:
    """Ids of the tokens whose text holds ``>``: only they can complete a closing tag.

    A closing tag ends with ``>``, and an ASCII character decodes the same whatever bytes
    surround it, so an action's decoded text gains a tag only when a token holding ``>`` is
    appended: the policy decodes the action text after those tokens only. Byte-level BPE and
    SentencePiece vocabularies both spell ``>`` (or its byte fallback ``<0x3E>``) inside the
    token's string. None (decode after every token) when the vocabulary cannot be listed or
    the tags' own encoding disagrees.
    """
    try:
        size = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    except (TypeError, ValueError, AttributeError):
        return None
    ids = frozenset(i for i, piece in enumerate(pieces) if piece is None or ">" in piece)
    tags = tokenizer("</search></read></answer>", add_special_tokens=False)["input_ids"]
    if any(">" in tokenizer.decode([t]) and t not in ids for t in tags):
        return None
    return ids


class DemonstrationPolicy:
    """A teacher policy (e.g. the oracle) whose actions are recorded as an LM policy's tokens.

    It acts exactly as ``teacher`` does; on the side, each slot's episode is recorded through
    the same ``ContextBudget`` segments ``LMPolicy`` uses, with the teacher's action text
    encoded canonically. SFT trains on these records, so demonstrations and sampled episodes
    share one token path.
    """

    def __init__(
        self,
        teacher: Policy,
        tokenizer: Any,
        *,
        max_context_tokens: int = 4096,
        max_new_tokens: int = 48,
        observation_role: str = "user",
    ) -> None:
        """Wrap ``teacher``; ``tokenizer`` and the budget are those of the model to be trained."""
        self.teacher = teacher
        self.name = f"demo:{teacher.name}"
        self.format = chat_format(tokenizer, observation_role)
        self.budget = ContextBudget(self.format, max_context_tokens, max_new_tokens)
        self._records: dict[int, EpisodeTokens] = {}

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Forget the given slots (all when None), in the teacher too."""
        self.teacher.reset(indices)
        if indices is None:
            self._records.clear()
        for index in indices or ():
            self._records.pop(int(index), None)

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> list[Action]:
        """The teacher's actions; each one is recorded after the segment that preceded it."""
        actions = list(self.teacher.act(observations, infos))
        for position, (observation, info, action) in enumerate(
            zip(observations, infos, actions, strict=True)
        ):
            key = slot(info, position)
            record = self._records.get(key)
            if record is None or info.get("turn") == 0:
                record = self._records[key] = EpisodeTokens()
                segment = self.budget.prompt(observation)
            elif record.context_exhausted:
                continue
            else:
                segment = self.budget.observation(len(record.token_ids), observation)
            if segment is None:
                record.context_exhausted = True
                continue
            record.extend(segment, generated=False)
            record.extend(self.format.action_ids(action_to_text(action)), generated=True)
        return actions

    def pop_episode(self, index: int) -> EpisodeTokens:
        """Return slot ``index``'s token record and forget the slot."""
        record = self._records.pop(int(index), None)
        if record is None:
            raise KeyError(f"slot {index} has no episode: act() was never called for it since its last reset")
        return record
