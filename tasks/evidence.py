"""Where a question file keeps its supporting evidence, and how that becomes gold doc ids.

FlashRAG-style files keep evidence under dataset-specific names, mostly inside ``metadata``.
Unless told where (``evidence_field``, a dotted path such as ``metadata.supporting_ids``), a
question's evidence is read from the first of :data:`RECOGNIZED_FIELDS` it has:

- ``supporting_doc_ids`` or ``metadata.supporting_doc_ids``: doc ids (this project's writer);
- ``metadata.supporting_facts``: HotpotQA / 2WikiMultihopQA supporting facts, either as
  FlashRAG stores them (``{"title": [...], "sent_id": [...]}``) or as the original
  ``[[title, sentence index], ...]`` pairs. They name titles, so every passage with that title
  is gold (a chunked article gives several).

A value is a doc id, a list of doc ids, or one of the title layouts above. A list item that
is not a doc id but is a passage title stands for that title's passages; an item that is
neither is an error naming the file, line and field. A dataset in which no question has
evidence loads, with one :class:`NoEvidenceWarning` that says what that means.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.jsonl_lines import JsonlFormatError, is_text
from tasks.records import Corpus

RECOGNIZED_FIELDS: tuple[str, ...] = (
    "supporting_doc_ids",
    "metadata.supporting_doc_ids",
    "metadata.supporting_facts",
)
_MISSING = object()


class NoEvidenceWarning(UserWarning):
    """A dataset whose questions (some or all) name no supporting passage."""


def field_value(record: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of a record, or a private sentinel when any step is missing.

    >>> field_value({"metadata": {"ids": [1]}}, "metadata.ids")
    [1]
    """
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def check_field_path(dotted: str) -> str:
    """Validate an ``evidence_field`` option: dotted names, no empty part.

    Raises:
        ValueError: the path is empty or has an empty part, with an example of a good one.
    """
    if not isinstance(dotted, str) or not dotted or any(not part.strip() for part in dotted.split(".")):
        raise ValueError(
            f"evidence_field {dotted!r} must be a dotted field path such as 'metadata.supporting_ids'"
        )
    return dotted


class EvidenceReader:
    """Turns each question record's evidence into corpus doc ids; counts questions without any."""

    def __init__(self, corpus: Corpus, evidence_field: str | None = None) -> None:
        self.corpus = corpus
        self.fields = (check_field_path(evidence_field),) if evidence_field else RECOGNIZED_FIELDS
        self._titles: dict[str, tuple[str, ...]] | None = None
        self.questions = 0
        self.without = 0

    def doc_ids(self, record: Mapping[str, Any], where: str) -> tuple[str, ...]:
        """The gold doc ids of one question record, in order, without repeats.

        Raises:
            JsonlFormatError: the evidence is malformed or names passages the corpus lacks.
        """
        self.questions += 1
        for name in self.fields:
            value = field_value(record, name)
            if value is _MISSING or value is None:
                continue
            ids = tuple(dict.fromkeys(self._resolve(value, where, name)))
            if not ids:
                break
            return ids
        self.without += 1
        return ()

    def _titled(self, title: str) -> tuple[str, ...]:
        if self._titles is None:
            titles: dict[str, list[str]] = {}
            for passage in self.corpus.passages():
                titles.setdefault(passage.title, []).append(passage.doc_id)
            self._titles = {title: tuple(ids) for title, ids in titles.items()}
        return self._titles.get(title, ())

    def _resolve(self, value: Any, where: str, name: str) -> list[str]:
        if isinstance(value, Mapping):
            if "title" not in value:
                raise JsonlFormatError(
                    f"{where}: {name!r} is an object without a 'title' list; give doc ids (a list) or "
                    "HotpotQA supporting facts {'title': [...], 'sent_id': [...]}"
                )
            return self._items(value["title"], where, name, titles_only=True)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return self._items([value], where, name)
        return self._items(value, where, name)

    def _items(self, items: Any, where: str, name: str, titles_only: bool = False) -> list[str]:
        if not isinstance(items, list):
            raise JsonlFormatError(
                f"{where}: {name!r} must be a doc id or a list of doc ids, got {type(items).__name__}"
            )
        ids: list[str] = []
        unknown: list[str] = []
        for item in items:
            if isinstance(item, list) and len(item) == 2 and is_text(item[0]):
                item = item[0]  # an original HotpotQA [title, sentence index] pair
            elif isinstance(item, bool) or not isinstance(item, str | int):
                raise JsonlFormatError(f"{where}: {name!r} holds {item!r}; expected doc ids or titles")
            key = str(item)
            if not titles_only and key in self.corpus:
                ids.append(key)
            elif self._titled(key):
                ids.extend(self._titled(key))
            else:
                unknown.append(key)
        if unknown:
            raise JsonlFormatError(
                f"{where}: {name!r} names {len(unknown)} passage(s) the corpus lacks, neither doc ids nor "
                f"titles: {unknown[:5]}; fix the ids, or point evidence_field at the field that holds them"
            )
        return ids

    def warn_if_missing(self, dataset: str, sources: Sequence[str]) -> None:
        """Warn once when questions lack evidence, saying what that does to rewards and the oracle."""
        if not self.without:
            return
        looked = f"field {self.fields[0]!r}" if len(self.fields) == 1 else f"fields {list(self.fields)}"
        share = (
            f"none of its {self.questions} questions has"
            if self.without == self.questions
            else f"{self.without} of its {self.questions} questions have no"
        )
        warnings.warn(
            f"dataset {dataset!r} ({', '.join(sources)}): {share} supporting evidence (looked for {looked}). "
            "For those questions the evidence reward is always 0 and the oracle cannot search for gold "
            "passages: it answers with the gold answer without searching. If the files keep evidence "
            "under another name, pass it: --evidence-field metadata.FIELD (task_kwargs 'evidence_field').",
            NoEvidenceWarning,
            stacklevel=3,
        )


__all__ = ["RECOGNIZED_FIELDS", "EvidenceReader", "NoEvidenceWarning", "check_field_path", "field_value"]
