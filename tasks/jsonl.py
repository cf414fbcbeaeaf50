r"""Any FlashRAG / Search-R1 style dataset from local JSONL files, and the writer for that format.

Questions: one JSON object per line, ``{"id", "question", "golden_answers"}`` (``golden_answers`` a
list or a string; ids may be ints), optionally ``supporting_doc_ids`` and a ``metadata`` dict with
``kind`` (or HotpotQA's ``type``) and ``hops``. Corpus: ``{"id", "contents"}`` where ``contents`` is
``"title"\ntext`` (FlashRAG; the first line is the title, possibly quoted), or ``{"id", "title",
"text"}``. Files may be gzipped (``.gz``). A malformed line raises :class:`JsonlFormatError` naming
``file:line``; nothing is skipped silently (only blank lines are ignored).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasks.records import SPLITS, Corpus, Passage, Question, Task
from tasks.storage import atomic_write_lines

PathLike = str | os.PathLike[str]
SPLIT_ALIASES = {"validation": "dev", "val": "dev", "valid": "dev", "development": "dev"}


class JsonlFormatError(ValueError):
    """A line of a JSONL file that does not hold the expected record."""


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def read_jsonl(path: PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", record)`` for every non-blank line; raise on anything but a JSON object."""
    path = Path(path)
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise JsonlFormatError(
                    f"{where}: invalid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise JsonlFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def _identifier(value: Any, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise JsonlFormatError(f"{where}: {field!r} must be a non-empty string or an integer, got {value!r}")
    return str(value)


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
    doc_id = _identifier(record.get("id"), where, "id")
    if "contents" in record:
        if not isinstance(record["contents"], str):
            raise JsonlFormatError(f"{where}: 'contents' must be a string")
        title, text = split_contents(record["contents"])
    elif "text" in record:
        title, text = record.get("title", ""), record["text"]
        if not isinstance(title, str) or not isinstance(text, str):
            raise JsonlFormatError(f"{where}: 'title' and 'text' must be strings")
    else:
        raise JsonlFormatError(f"{where}: a corpus line needs 'contents' or 'text' (keys: {sorted(record)})")
    return Passage(doc_id, title, text)


def load_corpus(path: PathLike) -> Corpus:
    """Read a corpus file; duplicate ids and empty files are errors."""
    passages: list[Passage] = []
    seen: dict[str, str] = {}
    for where, record in read_jsonl(path):
        passage = _passage(record, where)
        if passage.doc_id in seen:
            raise JsonlFormatError(
                f"{where}: duplicate doc id {passage.doc_id!r} (first at {seen[passage.doc_id]})"
            )
        seen[passage.doc_id] = where
        passages.append(passage)
    if not passages:
        raise JsonlFormatError(f"{path}: corpus file holds no passages")
    return Corpus(passages)


def _answers(record: dict[str, Any], where: str) -> tuple[str, ...]:
    key = next((k for k in ("golden_answers", "answers", "answer") if k in record), None)
    if key is None:
        raise JsonlFormatError(f"{where}: a question line needs 'golden_answers' (keys: {sorted(record)})")
    raw = record[key]
    raw = [raw] if isinstance(raw, str | int | float) and not isinstance(raw, bool) else raw
    if not isinstance(raw, list) or not raw:
        raise JsonlFormatError(f"{where}: {key!r} must be a non-empty list or a string, got {record[key]!r}")
    answers = []
    for answer in raw:
        if isinstance(answer, bool) or not isinstance(answer, str | int | float) or not str(answer).strip():
            raise JsonlFormatError(f"{where}: every answer must be a non-empty string, got {answer!r}")
        answers.append(str(answer))
    return tuple(answers)


def _question(record: dict[str, Any], where: str, split: str, corpus: Corpus) -> Question:
    qid = _identifier(record.get("id"), where, "id")
    text = record.get("question")
    if not isinstance(text, str) or not text.strip():
        raise JsonlFormatError(f"{where}: 'question' must be a non-empty string, got {text!r}")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise JsonlFormatError(f"{where}: 'metadata' must be an object")
    supporting_raw = record.get("supporting_doc_ids", metadata.get("supporting_doc_ids", []))
    if not isinstance(supporting_raw, list):
        raise JsonlFormatError(f"{where}: 'supporting_doc_ids' must be a list")
    supporting = tuple(_identifier(d, where, "supporting_doc_ids") for d in supporting_raw)
    unknown = [d for d in supporting if d not in corpus]
    if unknown:
        raise JsonlFormatError(f"{where}: supporting doc ids not in the corpus: {unknown[:5]}")
    kind = record.get("kind", metadata.get("kind", metadata.get("type", "unknown")))
    hops = record.get("hops", metadata.get("hops", 1))
    if not isinstance(kind, str) or isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise JsonlFormatError(f"{where}: 'kind' must be a string and 'hops' a positive integer")
    return Question(qid, text, _answers(record, where), supporting, kind, hops, split)


def _split_name(name: str) -> str:
    split = SPLIT_ALIASES.get(name, name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {name!r}: use one of {SPLITS} (or {sorted(SPLIT_ALIASES)})")
    return split


def jsonl_task(corpus_path: PathLike, splits: Mapping[str, PathLike], name: str = "jsonl") -> Task:
    """Load a corpus and question files (``{"test": "test.jsonl", ...}``) into a :class:`Task`.

    Question ids must be unique within a split. If the same id appears in two splits (datasets
    that number each split from 0), every qid becomes ``"{split}/{id}"`` so that ids stay unique.
    """
    if not splits:
        raise ValueError("jsonl_task needs at least one question file, e.g. splits={'test': 'test.jsonl'}")
    corpus = load_corpus(corpus_path)
    loaded: dict[str, list[Question]] = {}
    for raw_split, path in splits.items():
        split = _split_name(raw_split)
        if split in loaded:
            raise ValueError(f"split {split!r} given twice (as {raw_split!r})")
        questions: list[Question] = []
        seen: dict[str, str] = {}
        for where, record in read_jsonl(path):
            question = _question(record, where, split, corpus)
            if question.qid in seen:
                raise JsonlFormatError(
                    f"{where}: duplicate question id {question.qid!r} (first at {seen[question.qid]})"
                )
            seen[question.qid] = where
            questions.append(question)
        if not questions:
            raise JsonlFormatError(f"{path}: question file holds no questions")
        loaded[split] = questions
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
    """Write ``corpus.jsonl`` (``{id, contents}``) and ``{split}.jsonl`` atomically; return the paths."""
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


__all__ = ["JsonlFormatError", "jsonl_task", "load_corpus", "read_jsonl", "split_contents", "write_flashrag"]
