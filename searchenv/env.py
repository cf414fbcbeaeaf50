"""SearchQA: answer a question by searching a local BM25 index."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from searchenv.actions import FORMAT_HELP, ParsedAction, action_to_text, parse_action
from searchenv.episode import EpisodeRecord, Turn
from searchenv.resources import shared_retriever, shared_task
from searchenv.rewards import RewardPreset, get_preset, reward_breakdown, total_reward
from searchenv.snippets import best_snippet, query_words
from searchenv.spaces import UnicodeText
from tasks.records import Question, Task

MAX_OBSERVATION_CHARS = 60_000

PROMPT_TEMPLATE = """Answer the question by searching a local index of {corpus} passages.
Each turn, reply with exactly one action:
<search>query</search> returns the top {top_k} passages with their doc ids.
<read>doc id</read> returns the full text of one passage.
<answer>short answer</answer> submits your final answer and ends the episode.
You may think inside <think>...</think> before the action. You have {max_turns} turns.
Question: {question}"""


class SearchQAEnv(gym.Env[str, Any]):
    """
    ## Description

    A question-answering episode over a local corpus. The agent sees a question and may search
    a BM25 index, read passages by doc id, and finally answer. It is rewarded ReZero-style for
    a correct answer and for the way it searched (format, persistence, evidence, diversity).
    The default task is the CIA World Factbook 2025 (public domain), whose questions small
    models cannot answer from memory, so search matters.

    ## Action Space

    Raw text or a structured dict. Text is parsed for the first complete
    `<search>query</search>`, `<read>doc_id</read>` or `<answer>text</answer>`; `<think>` text
    before it is allowed and anything after it is ignored (Search-R1). Dicts are
    `{"tool": "search", "query": ...}`, `{"tool": "read", "doc_id": ...}` or
    `{"tool": "answer", "answer": ...}`. `action_space` is a text space whose samples are
    random (mostly invalid) strings. An invalid action never raises: the turn is spent and the
    observation explains the expected format.

    ## Observation Space

    Text. On reset, the prompt (instructions and question). After a search, the top-k passages
    as `[i] doc_id | title | snippet` lines inside `<information>`; after a read, the full
    passage; after an invalid action, an `<error>` that says why.

    `info` carries the structured view every step: `question_id`, `turn`, `turns_left`, `tool`,
    `error`, `hits` (doc ids, titles, scores). When the episode ends it adds `reward_breakdown`,
    `answers` (gold), `correct` (normalized exact match) and `episode` (the `EpisodeRecord`).
    Gold answers never appear in observations or in `info` before the episode ends.

    ## Rewards

    A weighted sum of components in [0, 1] (see `searchenv.rewards`): correctness, format,
    retry (persistence), evidence and diversity. The default preset, `rezero-strict`, is
    ReZero's weights with a retry term that counts distinct queries only, since the original
    term pays an agent for repeating one query. With `reward_mode="terminal"` (default) the
    reward is paid on the last step; with `"dense"` each step pays the increase of the total,
    so the sum over an episode is the same.

    ## Starting State

    A question drawn uniformly from the split with `self.np_random`, or the one named by
    `options={"question_id": ...}`.

    ## Episode End

    `terminated` when the agent answers; `truncated` when `max_turns` turns pass without an
    answer. Never both.

    ## Arguments

    - `task`: a task name (`"factbook"`, `"synthetic"`, `"jsonl"`) or a `tasks.Task`.
    - `split`: `"train"`, `"dev"` or `"test"`.
    - `backend`: `"bm25s"` (default), `"pyserini"` or `"rank_bm25"`.
    - `reward_preset`: `"rezero-strict"` (default), `"rezero"`, `"em"`, `"f1"` or a `RewardPreset`.
    - `reward_mode`: `"terminal"` or `"dense"`.
    - `max_turns`, `top_k`, `snippet_chars`: the turn budget, hits per search, snippet length.
    - `hops`, `kinds`: keep only questions with these hop counts / kinds.
    - `task_kwargs`, `retriever_kwargs`: passed to the task loader and the index builder.
    - `judge`: optional `(question, answer, golds) -> float` used for correctness; it must not be
      the policy being evaluated.
    - `render_mode`: `None` or `"ansi"` (the transcript as text).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "factbook",
        split: str = "train",
        backend: str = "bm25s",
        reward_preset: str | RewardPreset = "rezero-strict",
        reward_mode: str = "terminal",
        max_turns: int = 8,
        top_k: int = 3,
        snippet_chars: int = 300,
        hops: int | Sequence[int] | None = None,
        kinds: Sequence[str] | None = None,
        task_kwargs: Mapping[str, Any] | None = None,
        retriever_kwargs: Mapping[str, Any] | None = None,
        judge: Callable[[str, str, tuple[str, ...]], float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if reward_mode not in ("terminal", "dense"):
            raise ValueError(f"reward_mode must be 'terminal' or 'dense', not {reward_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        if max_turns < 1 or top_k < 1 or snippet_chars < 20:
            raise ValueError("max_turns and top_k must be >= 1 and snippet_chars >= 20")
        self.task = shared_task(task, **dict(task_kwargs or {}))
        self.questions = _select_questions(self.task, split, hops, kinds)
        self._by_id = {q.qid: q for q in self.questions}
        self.retriever = shared_retriever(self.task.corpus, backend, **dict(retriever_kwargs or {}))
        self.preset = get_preset(reward_preset)
        self.reward_mode = reward_mode
        self.max_turns = max_turns
        self.top_k = top_k
        self.snippet_chars = snippet_chars
        self.judge = judge
        self.render_mode = render_mode
        self.split = split

        self.observation_space = UnicodeText(MAX_OBSERVATION_CHARS)
        self.action_space = UnicodeText(256, min_length=1)

        self._question: Question | None = None
        self._turns: list[Turn] = []
        self._transcript: list[tuple[str, str]] = []
        self._paid = 0.0
        self._done = True

    # -- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        if "question_id" in options:
            qid = options["question_id"]
            if qid not in self._by_id:
                raise ValueError(
                    f"question_id {qid!r} is not in the {self.split!r} split of {self.task.name!r}"
                )
            self._question = self._by_id[qid]
        else:
            self._question = self.questions[int(self.np_random.integers(len(self.questions)))]
        self._turns = []
        self._paid = 0.0
        self._done = False
        prompt = PROMPT_TEMPLATE.format(
            corpus=self.task.name,
            top_k=self.top_k,
            max_turns=self.max_turns,
            question=self._question.question,
        )
        self._transcript = [("", prompt)]
        return prompt, self._info(tool=None, error=None, hits=[])

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        if self._done or self._question is None:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        parsed = parse_action(action)
        observation, turn, hits = self._execute(
            parsed, action if isinstance(action, str) else action_to_text(parsed)
        )
        self._turns.append(turn)
        self._transcript.append((turn.raw, observation))

        terminated = turn.valid and turn.tool == "answer"
        truncated = not terminated and len(self._turns) >= self.max_turns
        self._done = terminated or truncated

        reward = 0.0
        info = self._info(tool=turn.tool, error=turn.error, hits=hits)
        if self.reward_mode == "dense" or self._done:
            record = EpisodeRecord(self._question, tuple(self._turns))
            breakdown = reward_breakdown(record, self.preset, judge=self.judge)
            total = total_reward(breakdown, self.preset)
            reward, self._paid = total - self._paid, total
            if self._done:
                info.update(
                    reward_breakdown=breakdown,
                    answers=list(self._question.answers),
                    correct=_exact_match(record) >= 1.0,
                    episode=record,
                )
        return observation, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for action, observation in self._transcript:
            if action:
                lines.append(f">>> {action}")
            lines.append(observation)
        return "\n".join(lines) + "\n"

    # -- internals -----------------------------------------------------------------------

    def _execute(self, parsed: ParsedAction, raw: str) -> tuple[str, Turn, list[dict[str, Any]]]:
        if not parsed.valid:
            turn = Turn(raw=raw, tool=None, error=parsed.error, search_tags=parsed.search_tags)
            return self._error_observation(parsed.error or FORMAT_HELP), turn, []
        if parsed.tool == "search":
            hits = self.retriever.search(parsed.argument, self.top_k)
            lines = []
            hit_infos = []
            words = query_words(parsed.argument)
            for rank, hit in enumerate(hits, start=1):
                passage = self.task.corpus[hit.doc_id]
                snippet = best_snippet(passage.text, words, self.snippet_chars)
                lines.append(f"[{rank}] {hit.doc_id} | {passage.title} | {snippet}")
                hit_infos.append({"doc_id": hit.doc_id, "title": passage.title, "score": float(hit.score)})
            body = "\n".join(lines) if lines else "No passages matched this query. Try other words."
            turn = Turn(
                raw=raw,
                tool="search",
                argument=parsed.argument,
                search_tags=parsed.search_tags,
                hit_doc_ids=tuple(h.doc_id for h in hits),
            )
            return f"<information>\n{body}\n</information>", turn, hit_infos
        if parsed.tool == "read":
            passage = self.task.corpus.get(parsed.argument)
            if passage is None:
                error = (
                    f"Unknown doc id {parsed.argument[:80]!r}. Read takes a doc id exactly as shown in "
                    "search results, e.g. the text after [1]."
                )
                turn = Turn(
                    raw=raw, tool=None, argument=parsed.argument, error=error, search_tags=parsed.search_tags
                )
                return self._error_observation(error), turn, []
            turn = Turn(raw=raw, tool="read", argument=parsed.argument, search_tags=parsed.search_tags)
            text = passage.text[: MAX_OBSERVATION_CHARS - 200]
            return f"<information>\n[{passage.doc_id}] {passage.title}\n{text}\n</information>", turn, []
        turn = Turn(raw=raw, tool="answer", argument=parsed.argument, search_tags=parsed.search_tags)
        return "Answer received. The episode is over.", turn, []

    def _error_observation(self, message: str) -> str:
        turns_left = self.max_turns - len(self._turns) - 1
        return f"<error>{message} Turns left: {turns_left}.</error>"

    def _info(self, *, tool: str | None, error: str | None, hits: list[dict[str, Any]]) -> dict[str, Any]:
        assert self._question is not None
        return {
            "question_id": self._question.qid,
            "turn": len(self._turns),
            "turns_left": self.max_turns - len(self._turns),
            "tool": tool,
            "error": error,
            "hits": hits,
        }


def _exact_match(record: EpisodeRecord) -> float:
    from searchenv.rewards import correctness

    return correctness(record, variant="em")


def _select_questions(
    task: Task, split: str, hops: int | Sequence[int] | None, kinds: Sequence[str] | None
) -> tuple[Question, ...]:
    questions = task.questions(split)
    if hops is not None:
        wanted_hops = {hops} if isinstance(hops, int) else set(hops)
        questions = tuple(q for q in questions if q.hops in wanted_hops)
    if kinds is not None:
        wanted_kinds = set(kinds)
        questions = tuple(q for q in questions if q.kind in wanted_kinds)
    if not questions:
        raise ValueError(
            f"no questions left in split {split!r} of task {task.name!r} "
            f"after filtering hops={hops}, kinds={kinds}"
        )
    return questions
