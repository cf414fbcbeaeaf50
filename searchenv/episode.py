"""The record of one episode: what every reward component and metric is computed from."""

from __future__ import annotations

from dataclasses import dataclass

from searchenv.question_ids import opaque_question_id
from tasks.records import Question

TOOLS: tuple[str, ...] = ("search", "read", "answer")


@dataclass(frozen=True)
class Turn:
    """One step of an episode.

    ``tool`` is None when the action did not parse (or its argument was rejected), in which
    case ``error`` says why. ``search_tags`` counts the complete ``<search>...</search>``
    pairs in the raw text, executed or not: ReZero halves the retry reward when a single
    turn holds more than one.
    """

    raw: str
    tool: str | None
    argument: str = ""
    error: str | None = None
    search_tags: int = 0
    hit_doc_ids: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the turn executed a tool (it parsed and its argument was accepted)."""
        return self.tool is not None and self.error is None


@dataclass(frozen=True)
class EpisodeRecord:
    """A finished (or, for dense rewards, partial) episode."""

    question: Question
    turns: tuple[Turn, ...] = ()

    @property
    def question_id(self) -> str:
        """The task's readable question id (the env shows agents only the opaque one)."""
        return self.question.qid

    @property
    def opaque_question_id(self) -> str:
        """The id ``info["question_id"]`` showed during the episode."""
        return opaque_question_id(self.question.qid)

    @property
    def answer(self) -> str | None:
        """The submitted answer, if the episode ended with one."""
        if self.turns and self.turns[-1].valid and self.turns[-1].tool == "answer":
            return self.turns[-1].argument
        return None

    @property
    def queries(self) -> tuple[str, ...]:
        """The search queries that were executed, in order."""
        return tuple(t.argument for t in self.turns if t.valid and t.tool == "search")

    @property
    def retrieved_doc_ids(self) -> frozenset[str]:
        """Every doc id any search of the episode returned."""
        return frozenset(doc_id for t in self.turns for doc_id in t.hit_doc_ids)

    def prefix(self, n_turns: int) -> EpisodeRecord:
        """The episode as it stood after its first ``n_turns`` turns."""
        return EpisodeRecord(self.question, self.turns[:n_turns])
