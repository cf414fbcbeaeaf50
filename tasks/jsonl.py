r"""Any FlashRAG / Search-R1 style dataset from local JSONL files, and the writer for that format.

Corpus lines: ``{"id", "contents"}`` where ``contents`` is ``"title"\ntext`` (FlashRAG: the first
line is the title, quotes stripped), or ``{"id", "title", "text"}``. Question lines: ``{"id",
"question", "golden_answers"}`` (``golden_answers`` a list or a single value; ``answers`` and
``answer`` are accepted too), optionally ``metadata`` with ``kind`` (or HotpotQA's ``type``) and
``hops``, and supporting evidence where :mod:`tasks.evidence` finds it (``evidence_field``
chooses the field). Files may be gzipped (``.gz``).

Every problem is a :class:`JsonlFormatError` (a ``ValueError``) naming ``file:line`` and the fix;
nothing is skipped silently (blank lines aside). Beyond :mod:`tasks.jsonl_lines` (encoding,
JSON, surrogates):

- doc ids must be readable back through ``<read>doc id</read>``: no leading, trailing or double
  spaces, no tabs, line breaks or other whitespace but single spaces, no control characters, no
  tag-like text (``</read>``), at most 500 characters (:func:`doc_id_problem`);
- gold answers must be gradable and typeable (:func:`answer_problem`): not empty once normalized
  (``"A"``, ``"the"``, ``"?!"`` are), no control characters or tag-like text, at most 500 characters;
- ids are unique (doc ids in the corpus, question ids in a split); an answer list is non-empty;
  a question is a non-blank string; a passage has some text.

Documented normalizations: an integer id ``7`` is the id ``"7"``; a title's whitespace runs
(line breaks, tabs) become single spaces, since a search hit shows it on one line; a gold answer
written as a JSON number keeps its source text and, when shorter, its plain decimal form too
(``1.0`` accepts "1.0" and "1"; ``2.50`` accepts "2.50" and "2.5"; an integer ``1`` is "1");
repeated answers are dropped; when two splits use the same question id (datasets that number each
split from 0) every question id becomes ``"{split}/{id}"``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tasks.evidence import EvidenceReader, NoEvidenceWarning
from tasks.jsonl_lines import JsonlFormatError, JsonNumber, PathLike, is_text, plain_number, read_jsonl
from tasks.records import SPLITS, Corpus, Passage, Question, Task
from tasks.storage import atomic_write_lines
from tasks.text import normalize_answer

T = TypeVar("T")
SPLIT_ALIASES = {"validation": "dev", "val": "dev", "valid": "dev", "development": "dev"}
# The longest argument an action may carry (searchenv.actions.MAX_ARGUMENT_CHARS).
MAX_DOC_ID_CHARS = 500
# What the action parser strips from an argument as a stray tag (searchenv.actions._ANY_TAG_RE).
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9_-]*>")


def doc_id_problem(doc_id: str) -> str | None:
    r"""Why an agent could never read this doc id back through ``<read>...</read>``, or None.

    The action parser collapses whitespace, drops control characters and tag-like text, and
    caps an argument at 500 characters, so an id with any of those could never be asked for.

    >>> doc_id_problem("fr/government/003") is None
    True
    >>> doc_id_problem("a  b")
    'it holds a run of 2 spaces'
    >>> doc_id_problem("x</read>")
    "it holds tag-like text '</read>', which the action parser removes"
    """
    if not doc_id:
        return "it is empty"
    if len(doc_id) > MAX_DOC_ID_CHARS:
        return f"it is {len(doc_id)} characters long; an action argument holds at most {MAX_DOC_ID_CHARS}"
    if doc_id != doc_id.strip():
        return "it starts or ends with whitespace"
    for char in doc_id:
        if char != " " and char.isspace():
            return f"it holds the whitespace character U+{ord(char):04X} (only single spaces are kept)"
        if unicodedata.category(char) == "Cc":
            return f"it holds the control character U+{ord(char):04X}"
    spaces = re.search(r" {2,}", doc_id)
    if spaces:
        return f"it holds a run of {len(spaces.group(0))} spaces"
    tag = _TAG_RE.search(doc_id)
    if tag:
        return f"it holds tag-like text {tag.group(0)!r}, which the action parser removes"
    return None


def answer_problem(answer: str) -> str | None:
    """Why a gold answer could never be graded or typed back, or None.

    Answers are compared after normalization (case, punctuation and the articles a, an, the
    dropped), and the reward refuses a gold answer that normalizes to nothing (any empty answer
    would match it); the action parser drops control characters and tag-like text, so an answer
    holding them could never be typed back.

    >>> answer_problem("Paris") is None, answer_problem("A").startswith("it is empty once normalized")
    (True, True)
    """
    if not normalize_answer(answer):
        return (
            "it is empty once normalized (case, punctuation and articles dropped), so it cannot be "
            "graded; write e.g. 'option A'"
        )
    if len(answer) > MAX_DOC_ID_CHARS:
        return f"it is {len(answer)} characters long; an answer action holds at most {MAX_DOC_ID_CHARS}"
    for char in answer:
        if unicodedata.category(char) == "Cc" and not char.isspace():
            return f"it holds the control character U+{ord(char):04X}"
    tag = _TAG_RE.search(answer)
    if tag:
        return f"it holds tag-like text {tag.group(0)!r}, which the action parser removes"
    return None


def _identifier(value: Any, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise JsonlFormatError(f"{where}: {field!r} must be a non-empty string or an integer, got {value!r}")
    return str(value)


def _doc_id(value: Any, where: str) -> str:
    doc_id = _identifier(value, where, "id")
    problem = doc_id_problem(doc_id)
    if problem:
        shown = doc_id if len(doc_id) <= 60 else doc_id[:57] + "..."
        raise JsonlFormatError(
            f"{where}: doc id {shown!r} can never be read: {problem}; rename it (e.g. with '_' or '-')"
        )
    return doc_id


def split_contents(contents: str) -> tuple[str, str]:
    r"""FlashRAG ``contents`` -> (title, text): the first line is the title, quotes stripped.

    >>> split_contents('"Paris"\nParis is the capital of France.')
    ('Paris', 'Paris is the capital of France.')
    >>> split_contents("no title line")
    ('', 'no title line')
    """
    if "\n" not in contents:
        return "", contents
    title, text = contents.split("\n", 1)
    title = title.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return title, text


def _passage(record: dict[str, Any], where: str) -> Passage:
    doc_id = _doc_id(record.get("id"), where)
    if "contents" in record:
        if not is_text(record["contents"]):
            raise JsonlFormatError(f"{where}: 'contents' must be a string, got {record['contents']!r}")
        title, text = split_contents(record["contents"])
    elif "text" in record:
        title, text = record.get("title", ""), record["text"]
        if not is_text(title) or not is_text(text):
            raise JsonlFormatError(f"{where}: 'title' and 'text' must be strings")
    else:
        raise JsonlFormatError(
            f"{where}: a corpus line needs 'contents' or 'text' (it has keys {sorted(record)})"
        )
    title = " ".join(title.split())
    if not title and not text.strip():
        raise JsonlFormatError(f"{where}: passage {doc_id!r} is empty; give it a title or text, or drop it")
    return Passage(doc_id, title, text)


def _unique(
    path: PathLike, parse: Callable[[dict[str, Any], str], T], key: Callable[[T], str], what: str
) -> list[T]:
    """Every line of ``path`` parsed, each ``what`` id once (a repeat names both lines)."""
    items: list[T] = []
    seen: dict[str, str] = {}
    for where, record in read_jsonl(path):
        item = parse(record, where)
        if key(item) in seen:
            raise JsonlFormatError(
                f"{where}: duplicate {what} {key(item)!r} (first at {seen[key(item)]}); ids must be unique"
            )
        seen[key(item)] = where
        items.append(item)
    return items


def load_corpus(path: PathLike) -> Corpus:
    """Read a corpus file (see the module docstring).

    Raises:
        JsonlFormatError: a malformed line, a duplicate or unreadable doc id, or no passage at all.
    """
    passages = _unique(path, _passage, lambda passage: passage.doc_id, "doc id")
    if not passages:
        raise JsonlFormatError(f"{path}: corpus file holds no passages")
    return Corpus(passages)


def _answers(record: dict[str, Any], where: str) -> tuple[str, ...]:
    key = next((k for k in ("golden_answers", "answers", "answer") if k in record), None)
    if key is None:
        raise JsonlFormatError(
            f"{where}: a question line needs 'golden_answers' (it has keys {sorted(record)})"
        )
    raw = record[key]
    raw = [raw] if isinstance(raw, str | int) and not isinstance(raw, bool) else raw
    if not isinstance(raw, list) or not raw:
        raise JsonlFormatError(f"{where}: {key!r} must be a non-empty list or a string, got {record[key]!r}")
    answers: list[str] = []
    for answer in raw:
        if isinstance(answer, bool) or not isinstance(answer, str | int) or not str(answer).strip():
            raise JsonlFormatError(
                f"{where}: every answer in {key!r} must be a non-blank string or a number, got {answer!r}"
            )
        problem = answer_problem(str(answer))
        if problem:
            raise JsonlFormatError(f"{where}: gold answer {answer!r} can never be matched: {problem}; fix it")
        answers.append(str(answer))
        plain = plain_number(answer) if isinstance(answer, JsonNumber) else None
        if plain is not None:
            answers.append(plain)
    return tuple(dict.fromkeys(answers))


def _question(record: dict[str, Any], where: str, split: str, evidence: EvidenceReader) -> Question:
    qid = _identifier(record.get("id"), where, "id")
    text = record.get("question")
    if not is_text(text) or not text.strip():
        raise JsonlFormatError(f"{where}: 'question' must be a non-blank string, got {text!r}")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise JsonlFormatError(f"{where}: 'metadata' must be an object, got {type(metadata).__name__}")
    kind = record.get("kind", metadata.get("kind", metadata.get("type", "unknown")))
    hops = record.get("hops", metadata.get("hops", 1))
    if not is_text(kind) or isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise JsonlFormatError(
            f"{where}: 'kind' must be a string and 'hops' a positive integer, got {kind!r} and {hops!r}"
        )
    answers = _answers(record, where)
    return Question(qid, text, answers, evidence.doc_ids(record, where), kind, hops, split)


def _split_name(name: str) -> str:
    split = SPLIT_ALIASES.get(name, name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {name!r}: use one of {SPLITS} (or {sorted(SPLIT_ALIASES)})")
    return split


def _load_split(path: PathLike, split: str, evidence: EvidenceReader) -> list[Question]:
    questions = _unique(
        path, lambda record, where: _question(record, where, split, evidence), lambda q: q.qid, "question id"
    )
    if not questions:
        raise JsonlFormatError(f"{path}: question file holds no questions")
    return questions


def jsonl_task(
    corpus_path: PathLike | None = None,
    splits: Mapping[str, PathLike] | None = None,
    name: str = "jsonl",
    evidence_field: str | None = None,
) -> Task:
    """Load a corpus and question files into a :class:`Task`.

    These are the ``task_kwargs`` of ``gym.make("SearchQA-v0", task="jsonl", task_kwargs=...)``.

    Args:
        corpus_path: The corpus file.
        splits: Question files by split, e.g. ``{"train": "train.jsonl", "test": "test.jsonl"}``
            (``validation``, ``val`` and ``valid`` mean ``dev``).
        name: The task's name (tables, warnings).
        evidence_field: Dotted path of the supporting doc ids in a question line, e.g.
            ``"metadata.supporting_ids"``; by default the layouts of :mod:`tasks.evidence`.

    Raises:
        JsonlFormatError: a file or line is malformed (its message names the file and line).
        ValueError: the arguments are missing or name an unknown split.
    """
    if corpus_path is None or not splits:
        raise ValueError(
            "the jsonl task needs its files: task_kwargs={'corpus_path': 'corpus.jsonl', 'splits': "
            "{'test': 'test.jsonl'}} (on a command line: --corpus PATH --questions test=PATH, or "
            "--dataset SPEC.json)"
        )
    corpus = load_corpus(corpus_path)
    evidence = EvidenceReader(corpus, evidence_field)
    loaded: dict[str, list[Question]] = {}
    for raw_split, path in splits.items():
        split = _split_name(raw_split)
        if split in loaded:
            raise ValueError(f"split {split!r} given twice (as {raw_split!r})")
        loaded[split] = _load_split(path, split, evidence)
    evidence.warn_if_missing(name, [str(path) for path in splits.values()])
    all_ids = [q.qid for questions in loaded.values() for q in questions]
    if len(set(all_ids)) != len(all_ids):
        loaded = {
            split: [
                Question(
                    f"{split}/{q.qid}", q.question, q.answers, q.supporting_doc_ids, q.kind, q.hops, q.split
                )
                for q in questions
            ]
            for split, questions in loaded.items()
        }
    return Task(name, corpus, {split: tuple(questions) for split, questions in loaded.items()})


def write_flashrag(task: Task, out_dir: PathLike) -> dict[str, Path]:
    """Write ``corpus.jsonl`` (``{id, contents}``) and ``{split}.jsonl`` atomically; return the paths.

    Questions carry their gold passages as ``supporting_doc_ids``, which the loader reads back.
    """
    out = Path(out_dir)
    for passage in task.corpus.passages():
        if "\n" in passage.title:
            raise ValueError(
                f"passage {passage.doc_id!r}: a title with a newline cannot be written as contents"
            )
    paths = {"corpus": out / "corpus.jsonl"}
    atomic_write_lines(
        paths["corpus"],
        (
            json.dumps({"id": p.doc_id, "contents": f'"{p.title}"\n{p.text}'}, ensure_ascii=False)
            for p in task.corpus.passages()
        ),
    )
    for split, questions in task.splits.items():
        paths[split] = out / f"{split}.jsonl"
        atomic_write_lines(
            paths[split],
            (
                json.dumps(
                    {
                        "id": q.qid,
                        "question": q.question,
                        "golden_answers": list(q.answers),
                        "supporting_doc_ids": list(q.supporting_doc_ids),
                        "metadata": {"kind": q.kind, "hops": q.hops},
                    },
                    ensure_ascii=False,
                )
                for q in questions
            ),
        )
    return paths


__all__ = [
    "JsonlFormatError",
    "NoEvidenceWarning",
    "answer_problem",
    "doc_id_problem",
    "jsonl_task",
    "load_corpus",
    "read_jsonl",
    "split_contents",
    "write_flashrag",
]
