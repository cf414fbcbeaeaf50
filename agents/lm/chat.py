r"""How an episode becomes tokens: chat-template segments and the loss mask.

An episode is a conversation: the reset prompt is the first user message, each action is an
assistant message, and each observation is a user message (the role is configurable). The
token sequence is built segment by segment, and the full sequence is exactly the
concatenation of the segments:

====================  =================================================  ====
segment               text (ChatML shown; any template works)            mask
====================  =================================================  ====
prompt                ``<|im_start|>user\n{prompt}<|im_end|>\n``         0
                      ``<|im_start|>assistant\n``
action                the generated tokens, then the end-of-turn token    1
                      ``<|im_end|>``
observation           ``\n<|im_start|>user\n{obs}<|im_end|>\n``          0
                      ``<|im_start|>assistant\n``
====================  =================================================  ====

The end-of-turn token belongs to the action (mask 1, like Search-R1 and TRL): the policy
must learn to stop. Template scaffolding and observations are mask 0. The observation that
follows the last action is never encoded: the policy never conditions on it.

Convention for equality with a one-shot tokenization: when an action's tokens are the
tokenizer's own encoding of its text, the concatenated segments equal
``tokenizer(template(conversation), add_special_tokens=False)`` (segment boundaries sit next
to special tokens or at the newline that ends the generation prompt, where byte-level BPE
never merges; tests check this). Sampled tokens need not be canonical, so a policy's token
sequence can differ from a re-tokenization of its decoded text: train on the recorded ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_PROMPT_SENTINEL = "\u2063PROMPT\u2063"
_ACTION_SENTINEL = "\u2063ACTION\u2063"
_OBSERVATION_SENTINEL = "\u2063OBSERVATION\u2063"
TRUNCATION_MARKER = "[... truncated]"


@dataclass(frozen=True)
class ChatFormat:
    """The chat template of one tokenizer, cut into the segments of an episode.

    Build it with ``ChatFormat.from_tokenizer(tokenizer)``. The text pieces are found by
    rendering the template on sentinel messages and diffing the results, so any template
    that renders a conversation prefix as a prefix of the full conversation works.
    """

    tokenizer: Any = field(repr=False)
    observation_role: str
    prompt_prefix: str
    prompt_suffix: str
    end_of_turn_id: int
    after_end_of_turn: str
    observation_prefix: str
    observation_suffix: str
    stop_token_ids: frozenset[int]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, observation_role: str = "user") -> ChatFormat:
        """The episode segments of ``tokenizer``'s chat template (see the class docstring)."""
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template")

        def render(messages: list[dict[str, str]], generation_prompt: bool) -> str:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
            if not isinstance(text, str):
                raise TypeError(
                    f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not str"
                )
            return text

        user = {"role": "user", "content": _PROMPT_SENTINEL}
        assistant = {"role": "assistant", "content": _ACTION_SENTINEL}
        observation = {"role": observation_role, "content": _OBSERVATION_SENTINEL}
        first = render([user], True)
        with_action = render([user, assistant], False)
        with_observation = render([user, assistant, observation], True)
        if first.count(_PROMPT_SENTINEL) != 1 or not with_action.startswith(first):
            raise ValueError(
                "unsupported chat template: the generation prompt is not a prefix of the conversation"
            )
        after_prompt = with_action[len(first) :]
        if not after_prompt.startswith(_ACTION_SENTINEL):
            raise ValueError(
                "unsupported chat template: it inserts text between the generation prompt and the assistant "
                f"content ({after_prompt.split(_ACTION_SENTINEL)[0]!r})"
            )
        closing = after_prompt[len(_ACTION_SENTINEL) :]
        if not with_observation.startswith(with_action):
            raise ValueError("unsupported chat template: a conversation prefix does not render as a prefix")
        observation_block = with_observation[len(with_action) :]
        if observation_block.count(_OBSERVATION_SENTINEL) != 1:
            raise ValueError(
                f"unsupported chat template: role {observation_role!r} drops or repeats its content"
            )

        closing_ids = tokenizer(closing, add_special_tokens=False)["input_ids"]
        if not closing_ids:
            raise ValueError("unsupported chat template: an assistant turn has no end-of-turn token")
        end_of_turn_id = int(closing_ids[0])
        end_of_turn_text = tokenizer.convert_ids_to_tokens(end_of_turn_id)
        if not _is_special(tokenizer, end_of_turn_id) or not closing.startswith(end_of_turn_text):
            raise ValueError(
                f"unsupported chat template: an assistant turn ends with {closing!r}, not a special token"
            )
        prompt_prefix, prompt_suffix = first.split(_PROMPT_SENTINEL)
        observation_prefix, observation_suffix = observation_block.split(_OBSERVATION_SENTINEL)
        stop_ids = {end_of_turn_id}
        if tokenizer.eos_token_id is not None:
            stop_ids.add(int(tokenizer.eos_token_id))
        return cls(
            tokenizer=tokenizer,
            observation_role=observation_role,
            prompt_prefix=prompt_prefix,
            prompt_suffix=prompt_suffix,
            end_of_turn_id=end_of_turn_id,
            after_end_of_turn=closing[len(end_of_turn_text) :],
            observation_prefix=observation_prefix,
            observation_suffix=observation_suffix,
            stop_token_ids=frozenset(stop_ids),
        )

    # -- segments ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with special-token strings recognised and nothing added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The first segment: template start, the prompt as a user message, the generation prompt."""
        return self.encode(self.prompt_prefix + prompt + self.prompt_suffix)

    def observation_ids(self, observation: str) -> list[int]:
        """The segment after an action's end-of-turn token, up to the next generation prompt.

        It opens with the template's text after the end-of-turn token (ChatML's newline).
        """
        return self.encode(
            self.after_end_of_turn + self.observation_prefix + observation + self.observation_suffix
        )

    def action_ids(self, action: str) -> list[int]:
        """An action written as text: its canonical encoding, then the end-of-turn token."""
        return [*self.encode(action), self.end_of_turn_id]

    def decode_action(self, token_ids: Sequence[int]) -> str:
        """The text of generated tokens, without special tokens (the env parses this)."""
        kept = [t for t in token_ids if t not in self.stop_token_ids]
        return self.tokenizer.decode(kept, skip_special_tokens=True)

    # -- whole conversations ----------------------------------------------------------------

    def messages(self, prompt: str, turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        """The conversation as chat messages; ``turns`` are (action, observation) pairs."""
        messages = [{"role": "user", "content": prompt}]
        for index, (action, observation) in enumerate(turns):
            messages.append({"role": "assistant", "content": action})
            if index < len(turns) - 1:
                messages.append({"role": self.observation_role, "content": observation})
        return messages

    def render(self, prompt: str, turns: Sequence[tuple[str, str]]) -> str:
        """One-shot template text of the episode, cut where the segments end.

        The last observation is left out and the text after the last end-of-turn token (which
        the template adds but the policy never generates) is dropped.
        """
        text = self.tokenizer.apply_chat_template(
            self.messages(prompt, turns), tokenize=False, add_generation_prompt=not turns
        )
        if turns and self.after_end_of_turn and text.endswith(self.after_end_of_turn):
            text = text[: -len(self.after_end_of_turn)]
        return text

    # -- fitting a context budget -----------------------------------------------------------

    def truncate(self, text: str, max_tokens: int, keep: str = "head") -> str:
        """``text`` cut to about ``max_tokens`` tokens plus a marker; ``keep`` is "head" or "tail"."""
        if keep not in ("head", "tail"):
            raise ValueError(f"keep must be 'head' or 'tail', not {keep!r}")
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return TRUNCATION_MARKER
        if keep == "head":
            return self.tokenizer.decode(ids[:max_tokens]) + "\n" + TRUNCATION_MARKER
        return TRUNCATION_MARKER + "\n" + self.tokenizer.decode(ids[-max_tokens:])


def _is_special(tokenizer: Any, token_id: int) -> bool:
    """Whether the tokenizer treats ``token_id`` as a special token.

    transformers 5.17 leaves added special tokens such as ChatML's ``<|im_end|>`` out of
    ``all_special_ids``; the added-token table marks them special on every version.
    """
    if token_id in set(tokenizer.all_special_ids):
        return True
    added = getattr(tokenizer, "added_tokens_decoder", {}).get(token_id)
    return bool(getattr(added, "special", False))


_FORMATS: dict[tuple[int, str], tuple[Any, ChatFormat]] = {}


def chat_format(tokenizer: Any, observation_role: str = "user") -> ChatFormat:
    """The (cached) ``ChatFormat`` of a tokenizer."""
    key = (id(tokenizer), observation_role)
    cached = _FORMATS.get(key)
    if cached is None or cached[0] is not tokenizer:
        cached = (tokenizer, ChatFormat.from_tokenizer(tokenizer, observation_role))
        _FORMATS[key] = cached
    return cached[1]
