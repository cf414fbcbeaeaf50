"""Search-R1's baseline rows for any model: closed-book (``direct``) and retrieve-then-read (``rag``).

Both sit behind the ``agents.policy.Policy`` interface, so the leaderboard plays them in the same
env, on the same questions, with every metric the other rows have (``--agents
direct=smollm2-135m rag=runs/sft``):

- ``direct``: the model answers the question from its own knowledge in its first turn; no search.
- ``rag``: the first turn searches the question itself (the env's retriever, its top-k, once);
  the second turn shows the model the retrieved passages (title and snippet) with the question
  and it answers in one turn.

The model is ``tiny``, ``smollm2-135m``, a local model folder, or a training checkpoint or run
folder (``agents.weights``). Answers are generated greedily, or sampled at ``temperature``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.heuristics import question_of
from agents.policy import Action, slot
from searchenv.observations import parse_hits

BASELINES = ("direct", "rag")
DIRECT_PROMPT = (
    "Answer the question with a short answer only (a name, number or phrase).\nQuestion: {question}"
)
RAG_PROMPT = (
    "Answer the question with a short answer only (a name, number or phrase), using the passages.\n"
    "{passages}\nQuestion: {question}"
)
MAX_QUERY_CHARS = 400  # an action holds at most 500 characters
MAX_ANSWER_CHARS = 200


def clean_answer(text: str) -> str:
    r"""The first line of a generated reply, without an "Answer:" prefix or quotes.

    >>> clean_answer("Answer: Paris.\nIt is the capital.")
    'Paris'
    >>> clean_answer("   ")
    'unknown'
    """
    line = text.strip().split("\n", 1)[0].strip()
    lowered = line.lower()
    for prefix in ("answer:", "the answer is", "a:"):
        if lowered.startswith(prefix):
            line = line[len(prefix) :].strip()
            break
    line = line.strip(" \"'.")[:MAX_ANSWER_CHARS].strip()
    return line or "unknown"


class LMBaseline:
    """``direct`` or ``rag`` with one model: one generated answer per question.

    Args:
        model: A causal LM (``transformers``), in eval mode.
        tokenizer: Its tokenizer; its chat template is used when it has one.
        mode: ``"direct"`` or ``"rag"``.
        greedy: Greedy decoding, else sampling at ``temperature``.
        temperature: The sampling temperature.
        seed: Seeds torch's sampler once, at construction.
        max_new_tokens: Tokens generated per answer.
        passage_chars: Characters of each retrieved snippet shown to the model (``rag``).
        name: The policy's name.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mode: str = "direct",
        *,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
        max_new_tokens: int = 24,
        passage_chars: int = 300,
        name: str | None = None,
    ) -> None:
        import torch

        if mode not in BASELINES:
            raise ValueError(f"unknown baseline {mode!r}; known: {BASELINES}")
        self.model, self.tokenizer, self.mode = model, tokenizer, mode
        self.greedy, self.temperature = greedy, temperature
        self.max_new_tokens, self.passage_chars = max_new_tokens, passage_chars
        self.name = name or mode
        self._questions: dict[int, str] = {}
        torch.manual_seed(seed)

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Forget the questions of ``indices`` (all when None)."""
        if indices is None:
            self._questions.clear()
        for index in indices or ():
            self._questions.pop(index, None)

    def prompt(self, question: str, observation: str | None = None) -> str:
        """The model's input: the question (and, for ``rag``, the passages of ``observation``)."""
        if observation is None:
            content = DIRECT_PROMPT.format(question=question)
        else:
            hits = parse_hits(observation)
            passages = "\n".join(
                f"[{i}] {hit.title}: {hit.snippet[: self.passage_chars]}" for i, hit in enumerate(hits, 1)
            )
            content = RAG_PROMPT.format(passages=passages or "(no passages)", question=question)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
            return str(text)
        return f"{content}\nAnswer:"

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> list[Action]:
        """Search the question (``rag``, first turn), else answer every pending question in one batch."""
        actions: list[Action | None] = [None] * len(observations)
        prompts: list[tuple[int, str]] = []
        for position, (observation, info) in enumerate(zip(observations, infos)):
            key = slot(info, position)
            first = int(info.get("turn", 0)) == 0 or key not in self._questions
            if first:
                self._questions[key] = question_of(observation)
            question = self._questions[key]
            if self.mode == "rag" and first and int(info.get("turns_left", 2)) > 1:
                actions[position] = {"tool": "search", "query": question[:MAX_QUERY_CHARS]}
            else:
                retrieved = observation if self.mode == "rag" and not first else None
                prompts.append((position, self.prompt(question, retrieved)))
        for (position, _), reply in zip(prompts, self.generate([text for _, text in prompts])):
            actions[position] = {"tool": "answer", "answer": clean_answer(reply)}
        return [action for action in actions if action is not None]

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """One reply per prompt (left-padded batch)."""
        if not prompts:
            return []
        import torch

        tokenizer = self.tokenizer
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        try:
            batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = side
        device = next(self.model.parameters()).device
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        sampling: dict[str, Any] = {"do_sample": False}
        if not self.greedy:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_k": 0, "top_p": 1.0}
        with torch.no_grad():
            output = self.model.generate(
                **batch, max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        width = batch["input_ids"].shape[1]
        return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in output]


def load_baseline(
    mode: str,
    source: str,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int = 0,
    device: str = "auto",
) -> LMBaseline:
    """``direct`` or ``rag`` with the model ``source``: a model name, a model folder, or a checkpoint.

    Raises:
        ValueError: On an unknown mode or model name.
        FileNotFoundError: On a folder that is neither a model nor a checkpoint.
    """
    if mode not in BASELINES:
        raise ValueError(f"unknown baseline {mode!r}; known: {BASELINES}")
    from agents.device import resolve_device
    from agents.lm.models import load_model

    path = Path(source)
    if path.is_dir() and not (path / "config.json").is_file():
        from agents.weights import load_checkpoint_model

        model, tokenizer = load_checkpoint_model(path, device=device)
    else:
        model, tokenizer = load_model(source)
        model = model.to(resolve_device(device))
    model.eval()
    return LMBaseline(
        model, tokenizer, mode, greedy=greedy, temperature=temperature, seed=seed, name=f"{mode}:{source}"
    )


__all__ = ["BASELINES", "LMBaseline", "clean_answer", "load_baseline"]
