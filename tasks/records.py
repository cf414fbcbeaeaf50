"""Records shared by every task: passages, questions, the corpus store and the task itself.

Data flows one way (tasks -> searchenv -> agents -> benchmarks), so these types live here and
``searchenv`` imports them; nothing in ``tasks`` imports ``searchenv``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

# Re-exported: agents.checkpoint and several benchmarks import atomic_write_lines from here.
from tasks.storage import atomic_write_lines

SPLITS: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question with verifiable answers and the passages that support them.

    ``answers`` holds every accepted surface form (the first is canonical);
    ``supporting_doc_ids`` holds the passages a correct answer can be read from (for a
    multi-hop question, one per hop).
    """

    qid: str
    question: str
    answers: tuple[str, ...]
    supporting_doc_ids: tuple[str, ...] = ()
    kind: str = "unknown"
    hops: int = 1
    split: str = "train"

    def __post_init__(self) -> None:
        """Reject a question without answers or with an unknown split."""
        if not self.answers:
            raise ValueError(f"question {self.qid!r} has no gold answers")
        if self.split not in SPLITS:
            raise ValueError(f"question {self.qid!r}: split {self.split!r} not in {SPLITS}")


class Corpus(Mapping[str, Passage]):
    """An immutable mapping doc_id -> Passage, in a fixed order, with a content fingerprint.

    The order is the order passages were given in; retrieval backends index in this order,
    so position ``i`` of every backend is ``corpus.doc_ids[i]``.
    """

    def __init__(self, passages: Iterable[Passage]) -> None:
        """Store ``passages`` in the order given; a repeated doc_id raises ``ValueError``."""
        self._passages: dict[str, Passage] = {}
        for passage in passages:
            if passage.doc_id in self._passages:
                raise ValueError(f"duplicate doc_id {passage.doc_id!r} in corpus")
            self._passages[passage.doc_id] = passage
        self.doc_ids: tuple[str, ...] = tuple(self._passages)
        self._fingerprint: str | None = None

    def __getitem__(self, doc_id: str) -> Passage:
        """The passage with this doc_id (``KeyError`` if none)."""
        return self._passages[doc_id]

    def __iter__(self) -> Iterator[str]:
        """The doc_ids, in corpus order."""
        return iter(self.doc_ids)

    def __len__(self) -> int:
        """The number of passages."""
        return len(self.doc_ids)

    def passages(self) -> Iterator[Passage]:
        """The passages, in corpus order."""
        return iter(self._passages.values())

    def fingerprint(self) -> str:
        """sha256 over ids, titles and texts in order: the key of every index built from it."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for p in self._passages.values():
                for part in (p.doc_id, p.title, p.text):
                    encoded = part.encode("utf-8")
                    digest.update(len(encoded).to_bytes(8, "little"))
                    digest.update(encoded)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write ``{id, title, text}`` lines atomically (temp file, then rename)."""
        atomic_write_lines(
            path,
            (json.dumps({"id": p.doc_id, "title": p.title, "text": p.text}) for p in self.passages()),
        )


@dataclass(frozen=True)
class Task:
    """A corpus plus questions in fixed, disjoint splits."""

    name: str
    corpus: Corpus
    splits: Mapping[str, tuple[Question, ...]] = field(default_factory=dict)

    def questions(self, split: str) -> tuple[Question, ...]:
        """The questions of ``split``; an unknown split raises ``KeyError`` naming the known ones."""
        if split not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]


def question_to_dict(question: Question) -> dict[str, object]:
    """A question as a JSON-ready dict (tuples become lists)."""
    record = asdict(question)
    record["answers"] = list(question.answers)
    record["supporting_doc_ids"] = list(question.supporting_doc_ids)
    return record


def split_counts(task: Task) -> dict[str, int]:
    """The number of questions per split."""
    return {split: len(qs) for split, qs in task.splits.items()}


__all__: Sequence[str] = (
    "SPLITS",
    "Corpus",
    "Passage",
    "Question",
    "Task",
    "atomic_write_lines",
    "question_to_dict",
    "split_counts",
)
