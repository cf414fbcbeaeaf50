"""SearchQA: answer a question by searching a local BM25 index."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from searchenv.actions import FORMAT_HELP, ParsedAction, action_to_text, parse_action
from searchenv.episode import EpisodeRecord, Turn
from searchenv.observations import (
    ANSWER_RECEIVED,
    MAX_OBSERVATION_CHARS,
    PROMPT_TEMPLATES,
    render_error,
    render_passage,
    render_prompt,
    unknown_doc_message,
)
from searchenv.question_ids import opaque_question_id
from searchenv.questions import filter_questions, splits_holding
from searchenv.resources import shared_retriever, shared_task
from searchenv.rewards import RewardPreset, get_preset, reward_breakdown, total_reward
from searchenv.search_view import SearchView
from searchenv.snippets import best_snippet
from searchenv.spaces import UnicodeText
from tasks.records import Question, Task


class SearchQAEnv(gym.Env[str, Any]):
    """Answer a question by searching a local BM25 index, reading passages and answering.

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
    passage; after an invalid action, an `<error>` that says why. `searchenv.observations`
    renders these texts and parses them back.

    Every observation fits `observation_space` (60,000 characters): a longer passage, title,
    question or result list is cut, and each cut ends with `[truncated: N more characters]`.

    `info` carries the structured view every step: `question_id`, `turn`, `turns_left`, `tool`,
    `error`, `hits` (doc ids, titles, scores). When the episode ends it adds `reward_breakdown`,
    `answers` (gold), `correct` (normalized exact match), `readable_question_id` and `episode`
    (the `EpisodeRecord`). Gold answers never appear in observations or in `info` before the
    episode ends, and neither does the task's readable question id (`internet_code/eg` would
    give its answer away): `info["question_id"]` is an opaque stable hash of it, `q-` and 12 hex
    digits (`searchenv.question_ids`).

    ## Rewards

    A weighted sum of components in [0, 1] (see `searchenv.rewards`): correctness, format,
    retry (persistence), evidence and diversity. The default preset, `rezero-strict`, is
    ReZero's weights with a retry term that counts distinct queries only, since the original
    term pays an agent for repeating one query. With `reward_mode="terminal"` (default) the
    reward is paid on the last step; with `"dense"` each step pays the increase of the total,
    so the sum over an episode is the same.

    ## Starting State

    A question drawn uniformly from the split with `self.np_random`, or the one named by
    `options={"question_id": ...}`: its readable id or the opaque id of `info["question_id"]`.

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
    - `read_chars`: `None` (default) returns the whole passage on a read; a number returns that
      many characters of it, starting at the clause that shares most words with the episode's
      last search (the snippet rule, with a larger budget): shorter episodes for cheap training.
    - `prompt`: `"full"` (default: instructions for an agent that has never seen the tags) or
      `"short"` (one line of tags, then the question: fewer tokens for a model taught by SFT).
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
        prompt: str = "full",
        read_chars: int | None = None,
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
        if read_chars is not None and read_chars < 20:
            raise ValueError(f"read_chars must be None (whole passages) or >= 20, not {read_chars}")
        if prompt not in PROMPT_TEMPLATES:
            raise ValueError(f"prompt must be one of {sorted(PROMPT_TEMPLATES)}, not {prompt!r}")
        self.task = shared_task(task, **dict(task_kwargs or {}))
        self.questions = filter_questions(self.task, split, hops, kinds)
        self._filters = {"hops": hops, "kinds": kinds}
        self._by_id = _ids_to_questions(self.questions, f"the {split!r} split of {self.task.name!r}")
        self.retriever = shared_retriever(self.task.corpus, backend, **dict(retriever_kwargs or {}))
        self._passage_of = self.task.corpus.__getitem__
        self.preset = get_preset(reward_preset)
        self.reward_mode = reward_mode
        self.max_turns = max_turns
        self.top_k = top_k
        self.snippet_chars = snippet_chars
        self._view = SearchView(self._passage_of, snippet_chars)
        self.prompt_style = prompt
        self.read_chars = read_chars
        self.judge = judge
        self.render_mode = render_mode
        self.split = split

        self.observation_space = UnicodeText(MAX_OBSERVATION_CHARS)
        self.action_space = UnicodeText(256, min_length=1)

        self._question: Question | None = None
        self._opaque_id = ""
        self._turns: list[Turn] = []
        self._last_query_words: frozenset[str] = frozenset()
        self._transcript: list[tuple[str, str]] = []
        self._paid = 0.0
        self._done = True

    # -- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start an episode: a question drawn with ``np_random``, or ``options["question_id"]``.

        The id may be the readable one or the opaque one an earlier ``info`` showed.
        """
        super().reset(seed=seed)
        options = options or {}
        if "question_id" in options:
            qid = options["question_id"]
            if qid not in self._by_id:
                elsewhere = splits_holding(self.task, qid)
                if self.split in elsewhere:
                    filters = ", ".join(f"{k}={v!r}" for k, v in self._filters.items() if v is not None)
                    raise ValueError(
                        f"question_id {qid!r} is in the {self.split!r} split of {self.task.name!r}, but "
                        f"this env's filters ({filters}) leave it out: drop or widen them"
                    )
                where = f"; it is in {', '.join(map(repr, elsewhere))}: pass split=" if elsewhere else ""
                raise ValueError(
                    f"question_id {qid!r} is not in the {self.split!r} split of {self.task.name!r}"
                    + (f"{where}{elsewhere[0]!r}" if elsewhere else "")
                )
            self._question = self._by_id[qid]
        else:
            self._question = self.questions[int(self.np_random.integers(len(self.questions)))]
        self._opaque_id = opaque_question_id(self._question.qid)
        self._turns = []
        self._last_query_words = frozenset()
        self._paid = 0.0
        self._done = False
        prompt = render_prompt(
            self._question.question,
            corpus=self.task.name,
            top_k=self.top_k,
            max_turns=self.max_turns,
            style=self.prompt_style,
        )
        self._transcript = [("", prompt)]
        return prompt, self._info(None, None, [])

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        """Spend one turn on ``action`` (text or dict); bad actions come back as ``<error>``."""
        if self._done or self._question is None:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        parsed = parse_action(action)
        raw = action if isinstance(action, str) else action_to_text(parsed)
        if parsed.tool == "search" and parsed.error is None:
            observation, turn, hits = self._search(parsed, raw)
        else:
            observation, turn, hits = self._execute(parsed, raw)
        self._turns.append(turn)
        self._transcript.append((raw, observation))

        terminated = turn.tool == "answer" and turn.error is None
        truncated = not terminated and len(self._turns) >= self.max_turns
        self._done = terminated or truncated

        reward = 0.0
        info = self._info(turn.tool, turn.error, hits)
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
                    readable_question_id=self._question.qid,
                    episode=record,
                )
        return observation, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        """The transcript so far as text (``render_mode="ansi"``), else None."""
        if self.render_mode != "ansi":
            return None
        lines = []
        for action, observation in self._transcript:
            if action:
                lines.append(f">>> {action}")
            lines.append(observation)
        return "\n".join(lines) + "\n"

    # -- internals -----------------------------------------------------------------------

    def _search(self, parsed: ParsedAction, raw: str) -> tuple[str, Turn, list[dict[str, Any]]]:
        # The hot path: everything here but the retriever call is the overhead that
        # benchmarks/bench_env.py measures. The view remembers recent queries' rendered hits.
        query = parsed.argument
        view = self._view
        if view.snippet_chars != self.snippet_chars:  # changed after construction
            view = self._view = SearchView(self._passage_of, self.snippet_chars)
        words = view.words(query)  # before the retriever call, while the caches are warm
        self._last_query_words = words
        hits = self.retriever.search(query, self.top_k)
        shown = view.render(query, words, hits)
        hit_infos = [
            {"doc_id": doc_id, "title": title, "score": float(hit.score)}
            for doc_id, title, hit in zip(shown.doc_ids, shown.titles, hits)
        ]
        turn = Turn(raw, "search", query, None, parsed.search_tags, shown.doc_ids)
        return shown.observation, turn, hit_infos

    def _execute(self, parsed: ParsedAction, raw: str) -> tuple[str, Turn, list[dict[str, Any]]]:
        """Every step but a valid search: an error, a read or an answer."""
        if not parsed.valid:
            turn = Turn(raw=raw, tool=None, error=parsed.error, search_tags=parsed.search_tags)
            return self._error_observation(parsed.error or FORMAT_HELP), turn, []
        if parsed.tool == "read":
            passage = self.task.corpus.get(parsed.argument)
            if passage is None:
                error = unknown_doc_message(parsed.argument)
                turn = Turn(
                    raw=raw, tool=None, argument=parsed.argument, error=error, search_tags=parsed.search_tags
                )
                return self._error_observation(error), turn, []
            turn = Turn(raw=raw, tool="read", argument=parsed.argument, search_tags=parsed.search_tags)
            text = passage.text
            if self.read_chars is not None:
                text = best_snippet(text, self._last_query_words, self.read_chars)
            return render_passage(passage.doc_id, passage.title, text), turn, []
        turn = Turn(raw=raw, tool="answer", argument=parsed.argument, search_tags=parsed.search_tags)
        return ANSWER_RECEIVED, turn, []

    def _error_observation(self, message: str) -> str:
        return render_error(message, turns_left=self.max_turns - len(self._turns) - 1)

    def _info(self, tool: str | None, error: str | None, hits: list[dict[str, Any]]) -> dict[str, Any]:
        assert self._question is not None
        turn = len(self._turns)
        return {
            "question_id": self._opaque_id,
            "turn": turn,
            "turns_left": self.max_turns - turn,
            "tool": tool,
            "error": error,
            "hits": hits,
        }


def _ids_to_questions(questions: Sequence[Question], where: str) -> dict[str, Question]:
    """Each question under its readable id and under its opaque id."""
    readable = {q.qid: q for q in questions}
    opaque = {opaque_question_id(qid): q for qid, q in readable.items()}
    if len(opaque) < len(readable) or not opaque.keys().isdisjoint(readable):
        raise ValueError(f"two question ids of {where} share an opaque id (a 48-bit hash); rename one")
    return {**readable, **opaque}


def _exact_match(record: EpisodeRecord) -> float:
    from searchenv.rewards import correctness

    return correctness(record, variant="em")
