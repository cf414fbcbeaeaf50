r"""Naming a dataset of your own: the one place every command line and config turns paths into a task.

A jsonl dataset is a corpus file, one question file per split and, optionally, the field that
holds each question's supporting doc ids. It is named in one of two equivalent ways, with the
same options in every command (``searchenv play|index``, ``agents.train``, the leaderboard, the
experiments), always beside ``--task jsonl`` (``--tasks jsonl`` for the leaderboard):

- ``--corpus data/corpus.jsonl --questions train=data/train.jsonl,test=data/test.jsonl
  [--evidence-field metadata.supporting_ids]``;
- ``--dataset data/dataset.json``, a spec file holding the same (paths relative to the file)::

      {"name": "mine", "corpus": "corpus.jsonl",
       "questions": {"train": "train.jsonl", "test": "test.jsonl"},
       "evidence_field": "metadata.supporting_ids"}

Both become a :class:`DatasetSpec`, and :meth:`DatasetSpec.task_kwargs` the ``task_kwargs`` of
``gym.make("SearchQA-v0", task="jsonl", task_kwargs=...)`` (the arguments of
:func:`tasks.jsonl.jsonl_task`). ``python -m tasks.dataset --corpus ... --questions ... --out
data/dataset.json`` checks the files and writes the spec.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.evidence import check_field_path
from tasks.storage import atomic_write_json

SPEC_KEYS = frozenset({"name", "corpus", "questions", "evidence_field"})
OPTIONS = ("dataset", "corpus", "questions", "evidence_field")


class DatasetSpecError(ValueError):
    """Dataset options or a spec file that do not name a dataset; the message says how to fix them."""


@dataclass(frozen=True)
class DatasetSpec:
    """A jsonl dataset: its name, corpus file, question file per split and evidence field."""

    name: str
    corpus: str
    questions: tuple[tuple[str, str], ...]
    evidence_field: str | None = None

    def __post_init__(self) -> None:
        """Reject an empty name, corpus or question list, and a malformed evidence field."""
        if not self.name.strip() or not self.corpus or not self.questions:
            raise DatasetSpecError("a dataset needs a name, a corpus file and at least one question file")
        if self.evidence_field is not None:
            try:
                check_field_path(self.evidence_field)
            except ValueError as error:
                raise DatasetSpecError(str(error)) from None

    def task_kwargs(self) -> dict[str, Any]:
        """The ``task_kwargs`` of the ``jsonl`` task (``tasks.jsonl.jsonl_task``'s arguments)."""
        kwargs: dict[str, Any] = {
            "corpus_path": self.corpus,
            "splits": dict(self.questions),
            "name": self.name,
        }
        if self.evidence_field:
            kwargs["evidence_field"] = self.evidence_field
        return kwargs

    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec as JSON, its paths relative to the spec's folder; returns the path."""
        target = Path(path)
        folder = target.parent.resolve()

        def relative(file: str) -> str:
            return os.path.relpath(Path(file).resolve(), folder)

        record: dict[str, Any] = {
            "name": self.name,
            "corpus": relative(self.corpus),
            "questions": {split: relative(file) for split, file in self.questions},
        }
        if self.evidence_field:
            record["evidence_field"] = self.evidence_field
        atomic_write_json(target, record, sort_keys=False)
        return target

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DatasetSpec:
        """Read a spec file (see the module docstring); its relative paths start at its folder.

        Raises:
            DatasetSpecError: the file is missing, not JSON, or lacks or mistypes a key.
        """
        spec_path = Path(path)
        try:
            record = json.loads(spec_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetSpecError(f"{spec_path}: no such dataset spec file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetSpecError(f"{spec_path}: not a readable JSON spec ({error})") from None
        if not isinstance(record, dict):
            raise DatasetSpecError(f"{spec_path}: a dataset spec is a JSON object with {sorted(SPEC_KEYS)}")
        unknown = sorted(set(record) - SPEC_KEYS)
        if unknown:
            raise DatasetSpecError(f"{spec_path}: unknown key(s) {unknown}; a spec has {sorted(SPEC_KEYS)}")
        corpus, questions = record.get("corpus"), record.get("questions")
        if not isinstance(corpus, str) or not isinstance(questions, dict) or not questions:
            raise DatasetSpecError(
                f"{spec_path}: needs 'corpus' (a path) and 'questions' ({{split: path}}), e.g. "
                '{"corpus": "corpus.jsonl", "questions": {"test": "test.jsonl"}}'
            )
        if not all(isinstance(file, str) for file in questions.values()):
            raise DatasetSpecError(f"{spec_path}: every 'questions' value must be a path string")
        folder = spec_path.parent
        name = record.get("name") or folder.resolve().name or "jsonl"
        evidence = record.get("evidence_field")
        if not isinstance(name, str) or (evidence is not None and not isinstance(evidence, str)):
            raise DatasetSpecError(f"{spec_path}: 'name' and 'evidence_field' must be strings")
        return cls(
            name=name,
            corpus=str(folder / corpus),
            questions=tuple((split, str(folder / file)) for split, file in questions.items()),
            evidence_field=evidence,
        )


def parse_questions(text: str) -> tuple[tuple[str, str], ...]:
    """``"train=a.jsonl,test=b.jsonl"`` -> ``(("train", "a.jsonl"), ("test", "b.jsonl"))``.

    Raises:
        DatasetSpecError: an item is not ``SPLIT=PATH``, or a split repeats.

    >>> parse_questions("train=data/train.jsonl,test=data/test.jsonl")
    (('train', 'data/train.jsonl'), ('test', 'data/test.jsonl'))
    """
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        split, equals, path = item.partition("=")
        if not equals or not split.strip() or not path.strip():
            raise DatasetSpecError(
                f"--questions item {item!r} is not SPLIT=PATH; write e.g. "
                "--questions train=train.jsonl,test=test.jsonl"
            )
        pairs.append((split.strip(), path.strip()))
    splits = [split for split, _ in pairs]
    if len(set(splits)) != len(splits):
        raise DatasetSpecError(f"--questions names a split twice: {splits}")
    return tuple(pairs)


def dataset_from_options(
    dataset: str | None = None,
    corpus: str | None = None,
    questions: str | None = None,
    evidence_field: str | None = None,
) -> DatasetSpec | None:
    """The dataset that a spec file or the path options name; None when none is given.

    ``evidence_field`` also overrides a spec file's own.

    Raises:
        DatasetSpecError: both forms given, or ``corpus`` without ``questions`` (or the reverse).
    """
    if dataset:
        if corpus or questions:
            raise DatasetSpecError("give either --dataset SPEC.json or --corpus and --questions, not both")
        spec = DatasetSpec.from_file(dataset)
        if evidence_field:
            spec = DatasetSpec(spec.name, spec.corpus, spec.questions, evidence_field)
        return spec
    if not corpus and not questions:
        if evidence_field:
            raise DatasetSpecError(
                "--evidence-field needs a dataset: --dataset SPEC.json, or --corpus and --questions"
            )
        return None
    if not corpus or not questions:
        raise DatasetSpecError("--corpus and --questions go together: --corpus PATH --questions test=PATH")
    name = Path(corpus).resolve().parent.name or "jsonl"
    return DatasetSpec(name, corpus, parse_questions(questions), evidence_field)


def task_arguments(task: str, spec: DatasetSpec | None) -> tuple[str, dict[str, Any]]:
    """``(task, task_kwargs)`` for the env: a dataset goes with task ``jsonl`` and only with it.

    Raises:
        DatasetSpecError: ``jsonl`` without a dataset, or a dataset with another task.
    """
    if task == "jsonl":
        if spec is None:
            raise DatasetSpecError(
                "--task jsonl needs its files: --corpus PATH --questions test=PATH (optionally "
                "--evidence-field FIELD), or --dataset SPEC.json"
            )
        return task, spec.task_kwargs()
    if spec is not None:
        raise DatasetSpecError(f"dataset options apply to --task jsonl, not to {task!r}; add --task jsonl")
    return task, {}


OPTION_HELP: tuple[tuple[str, str, str], ...] = (
    ("--dataset", "SPEC.json", "dataset spec file: name, corpus, questions, evidence_field (default: none)"),
    (
        "--corpus",
        "PATH",
        "corpus JSONL, lines {id, contents} or {id, title, text}; with --questions (default: none)",
    ),
    (
        "--questions",
        "SPLIT=PATH[,...]",
        "question JSONL per split, e.g. train=train.jsonl,test=test.jsonl (default: none)",
    ),
    (
        "--evidence-field",
        "FIELD",
        "dotted field of each question's supporting doc ids, e.g. metadata.supporting_ids (default: "
        "supporting_doc_ids, metadata.supporting_doc_ids or HotpotQA's metadata.supporting_facts)",
    ),
)


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset``, ``--corpus``, ``--questions`` and ``--evidence-field`` to a command."""
    group = parser.add_argument_group(
        "dataset of your own (with task jsonl)",
        "A jsonl dataset, named by a spec file or by its files (README: 'Your own data').",
    )
    for flag, metavar, text in OPTION_HELP:
        group.add_argument(flag, metavar=metavar, default=None, help=text)


def dataset_from_args(args: argparse.Namespace) -> DatasetSpec | None:
    """The dataset that ``add_dataset_options``' options name (see :func:`dataset_from_options`)."""
    return dataset_from_options(*(getattr(args, name, None) for name in OPTIONS))


# ----------------------------------------------------------------------------- what the files hold
def _paths(value: Any) -> Iterator[Path]:
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if path.is_file():
            yield path
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _paths(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _paths(item)


def file_signature(task_kwargs: Mapping[str, Any]) -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mtime ns, inode) of every existing file the arguments name: changes with any edit.

    Cheap enough to check on every env construction; an edit that keeps size and mtime to the
    nanosecond, in place, is the one change it can miss.
    """
    signature = []
    for path in _paths(task_kwargs):
        stat = path.stat()
        signature.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(signature)


def content_fingerprint(task_kwargs: Mapping[str, Any]) -> str:
    """sha256 of the arguments (paths left out) and of the content of every file they name.

    Keys results that must be redone when the data changes but not when it moves.
    """
    digest = hashlib.sha256()
    for path in _paths(task_kwargs):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    rest = {key: value for key, value in task_kwargs.items() if key not in ("corpus_path", "splits")}
    rest["splits"] = sorted(task_kwargs.get("splits", {}))
    digest.update(json.dumps(rest, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tasks.dataset``: load a dataset (checking every line) and write its spec file."""
    parser = argparse.ArgumentParser(
        prog="python -m tasks.dataset",
        description="Check a jsonl dataset and write its spec file (then use --dataset SPEC.json anywhere).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_options(parser)
    parser.add_argument("--name", default=None, help="dataset name (default: the corpus folder's name)")
    parser.add_argument("--out", default=None, help="spec file to write (default: none, only check)")
    args = parser.parse_args(argv)
    try:
        spec = dataset_from_args(args)
        if spec is None:
            parser.error("name a dataset: --corpus PATH --questions SPLIT=PATH[,...], or --dataset SPEC.json")
        if args.name:
            spec = DatasetSpec(args.name, spec.corpus, spec.questions, spec.evidence_field)
        from tasks.jsonl import jsonl_task

        task = jsonl_task(**spec.task_kwargs())
    except ValueError as error:
        print(f"python -m tasks.dataset: {error}", file=sys.stderr)
        return 2
    counts = {split: len(questions) for split, questions in task.splits.items()}
    with_evidence = sum(bool(q.supporting_doc_ids) for qs in task.splits.values() for q in qs)
    print(f"{spec.name}: {len(task.corpus)} passages; questions {counts}; {with_evidence} with evidence")
    if args.out:
        print(f"wrote {spec.to_file(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
