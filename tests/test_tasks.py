"""Task sets: the Factbook build (counts, splits, gold evidence, cleanliness, determinism), the
FlashRAG JSONL loader (round trip, malformed lines) and the registry."""

from __future__ import annotations

import doctest
import hashlib
import json
import os
import re
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

import tasks
from tasks import factbook, jsonl, registry, storage, text
from tasks.factbook import (
    FORBIDDEN_IN_ANSWERS,
    contains_answer,
    factbook_build,
    factbook_evidence,
    factbook_task,
    split_of,
    write_factbook,
)
from tasks.jsonl import JsonlFormatError, jsonl_task, write_flashrag
from tasks.records import SPLITS, Corpus, Passage, Question, Task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task() -> Task:
    return factbook_task()


def all_questions(task: Task) -> list[Question]:
    return [q for split in SPLITS for q in task.questions(split)]


def task_digest(task: Task) -> str:
    digest = hashlib.sha256(task.corpus.fingerprint().encode())
    for q in all_questions(task):
        digest.update(
            repr((q.qid, q.question, q.answers, q.supporting_doc_ids, q.kind, q.hops, q.split)).encode()
        )
    return digest.hexdigest()


# ----------------------------------------------------------------------------- factbook
def test_counts_and_kinds(task: Task) -> None:
    questions = all_questions(task)
    assert len(task.corpus) >= 3000
    assert len(questions) >= 2000
    assert sum(q.hops == 2 for q in questions) / len(questions) >= 0.30
    kinds = Counter(q.kind for q in questions)
    assert "unknown" not in kinds
    single_kinds = {q.kind for q in questions if q.hops == 1}
    assert len(single_kinds) >= 8
    assert {"capital", "currency", "highest_point", "independence"} <= single_kinds
    assert any(k.startswith("bridge_") for k in kinds) and any(k.startswith("compare_") for k in kinds)
    for q in questions:
        assert q.hops == (1 if q.kind in single_kinds else 2), q.qid


def test_passages_are_readable_and_searchable(task: Task) -> None:
    for doc_id, passage in task.corpus.items():
        assert re.fullmatch(r"[a-z]{2}/[a-z-]+/\d{3}", doc_id), doc_id
        assert " — " in passage.title and passage.text.strip()
        assert len(passage.text.split()) <= factbook.MAX_WORDS + 5, doc_id
        assert not re.search(r"<(strong|br|em|/)|&[a-z]+;", passage.text), doc_id
    france = [p for p in task.corpus.values() if p.doc_id.startswith("fr/")]
    capital = [p for p in france if "Capital: name: Paris" in p.text]
    assert len(capital) == 1 and capital[0].title.startswith("France — ")


def test_known_questions(task: Task) -> None:
    by_id = {q.qid: q for q in all_questions(task)}
    assert by_id["capital/fr"].question == "What is the capital of France?"
    assert by_id["capital/fr"].answers[0] == "Paris"
    assert by_id["currency/fr"].answers[:3] == ("euros", "euro", "EUR")
    assert by_id["highest_point/fr"].answers[0] == "Mont Blanc"
    assert by_id["independence/in"].answers[0] == "15 August 1947"


def test_splits_are_fixed_and_disjoint(task: Task) -> None:
    assert set(task.splits) == set(SPLITS)
    ids = {split: {q.qid for q in task.questions(split)} for split in SPLITS}
    texts = {split: {q.question for q in task.questions(split)} for split in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not ids[a] & ids[b] and not texts[a] & texts[b]
    questions = all_questions(task)
    assert len({q.question for q in questions}) == len(questions)
    for split in SPLITS:
        assert all(q.split == split == split_of(q.qid) for q in task.questions(split))
    shares = {split: len(task.questions(split)) / len(questions) for split in SPLITS}
    assert 0.75 < shares["train"] < 0.85 and 0.07 < shares["dev"] < 0.13 and 0.07 < shares["test"] < 0.13


def test_gold_passages_contain_the_evidence(task: Task) -> None:
    evidence = factbook_evidence()
    questions = all_questions(task)
    assert set(evidence) == {q.qid for q in questions}
    for q in questions:
        assert q.supporting_doc_ids and all(d in task.corpus for d in q.supporting_doc_ids), q.qid
        proof = evidence[q.qid]
        assert {d for d, _ in proof} == set(q.supporting_doc_ids), q.qid
        # Checked on the raw text (case-insensitive), stricter than the normalized check of the build.
        for doc_id, value in proof:
            assert value.lower() in task.corpus[doc_id].text.lower(), (q.qid, doc_id, value)
        if q.kind.startswith("compare_"):
            assert len(proof) == 2 and q.answers[0] in q.question
            assert {task.corpus[d].title.split(" — ")[0] for d, _ in proof} >= {q.answers[0]}
        else:  # the answer itself is read from the last hop's passage
            assert proof[-1][1] == q.answers[0] and len(proof) == q.hops, q.qid


def test_bridge_values_identify_one_entity(task: Task) -> None:
    holders: dict[tuple[str, str], set[str]] = {}  # (kind, normalized value) -> entry codes holding it
    for entry in factbook.load_entries():
        for kind, fact in factbook.entry_facts(entry).items():
            for answer in fact.answers:
                holders.setdefault((kind, factbook.normalize_answer(answer)), set()).add(entry.code)
    evidence = factbook_evidence()
    bridges = [q for q in all_questions(task) if q.kind.startswith("bridge_")]
    assert len(bridges) > 500
    for q in bridges:
        _, _target, kind, code = q.qid.split("/")
        value = factbook.normalize_answer(evidence[q.qid][0][1])
        assert holders[(kind, value)] == {code}, (q.qid, holders[(kind, value)])
        assert not contains_answer(q.question, q.answers[0]), q.qid


def test_answers_are_clean(task: Task) -> None:
    for q in all_questions(task):
        assert len(set(q.answers)) == len(q.answers), q.qid
        for answer in q.answers:
            assert answer == answer.strip() and answer, q.qid
            assert not any(bad in answer for bad in FORBIDDEN_IN_ANSWERS), (q.qid, answer)
            assert not re.search(r"&[a-z]+;|\(\d{4} est|\d m$", answer), (q.qid, answer)


def test_build_is_memoized_and_deterministic_across_hash_seeds(task: Task) -> None:
    assert factbook_task() is task and factbook_build() is factbook_build()
    code = "from tasks.factbook import factbook_task; from tests.test_tasks import task_digest; "
    code += "print(task_digest(factbook_task()))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == task_digest(task)


# ----------------------------------------------------------------------------- jsonl
def test_write_factbook_round_trips_through_jsonl(task: Task, tmp_path: Path) -> None:
    paths = write_factbook(tmp_path)
    assert set(paths) == {"corpus", *SPLITS}
    first = json.loads(paths["corpus"].read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"id", "contents"} and first["contents"].startswith('"')
    loaded = jsonl_task(paths["corpus"], {s: paths[s] for s in SPLITS}, name="factbook")
    assert loaded.corpus.fingerprint() == task.corpus.fingerprint()
    assert loaded.corpus.doc_ids == task.corpus.doc_ids
    for split in SPLITS:
        assert loaded.questions(split) == task.questions(split)
    assert not list(tmp_path.glob(".*.tmp"))


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8"
    )
    return path


def test_jsonl_accepts_flashrag_variants(tmp_path: Path) -> None:
    corpus = write_lines(
        tmp_path / "corpus.jsonl",
        [
            {"id": 0, "contents": '"Paris"\nParis is the capital of France.'},
            {"id": "b", "title": "T", "text": "x"},
        ],
    )
    dev = write_lines(
        tmp_path / "dev.jsonl",
        [
            {"id": 1, "question": "capital of France?", "golden_answers": "Paris", "supporting_doc_ids": [0]},
            "",
            {
                "id": 2,
                "question": "q2",
                "golden_answers": ["x", "y"],
                "metadata": {"type": "bridge", "hops": 2},
            },
        ],
    )
    test = write_lines(tmp_path / "test.jsonl", [{"id": 1, "question": "q3", "golden_answers": ["c"]}])
    loaded = jsonl_task(corpus, {"validation": dev, "test": test}, name="mine")
    assert loaded.name == "mine" and loaded.corpus["0"] == Passage(
        "0", "Paris", "Paris is the capital of France."
    )
    assert loaded.corpus["b"] == Passage("b", "T", "x")
    first, second = loaded.questions("dev")
    assert first == Question("dev/1", "capital of France?", ("Paris",), ("0",), "unknown", 1, "dev")
    assert (second.kind, second.hops, second.answers) == ("bridge", 2, ("x", "y"))
    assert loaded.questions("test")[0].qid == "test/1"  # id 1 is in both splits, so ids get a prefix


@pytest.mark.parametrize(
    ("corpus_lines", "question_lines", "message"),
    [
        ([{"id": "a", "contents": "x"}, "{not json"], [], "corpus.jsonl:2: invalid JSON"),
        ([{"id": "a", "contents": "x"}, [1, 2]], [], "corpus.jsonl:2: expected a JSON object"),
        ([{"id": "a", "contents": "x"}, {"id": "a", "text": "y"}], [], "corpus.jsonl:2: duplicate doc id"),
        ([{"id": "a", "body": "x"}], [], "corpus.jsonl:1: a corpus line needs 'contents' or 'text'"),
        ([{"id": True, "contents": "x"}], [], "corpus.jsonl:1: 'id' must be"),
        ([], [], "corpus file holds no passages"),
        ([{"id": "a", "contents": "x"}], [{"id": 1, "question": "q"}], "test.jsonl:1: a question line needs"),
        (
            [{"id": "a", "contents": "x"}],
            [{"id": 1, "question": "q", "golden_answers": []}],
            "test.jsonl:1: ",
        ),
        (
            [{"id": "a", "contents": "x"}],
            [{"id": 1, "question": "", "golden_answers": ["x"]}],
            "'question' must",
        ),
        (
            [{"id": "a", "contents": "x"}],
            [{"id": 1, "question": "q", "golden_answers": "x", "supporting_doc_ids": ["zz"]}],
            "test.jsonl:1: 'supporting_doc_ids' names 1 passage(s) the corpus lacks",
        ),
        (
            [{"id": "a", "contents": "x"}],
            [
                {"id": 1, "question": "q", "golden_answers": "x"},
                {"id": "1", "question": "r", "golden_answers": "y"},
            ],
            "test.jsonl:2: duplicate question id",
        ),
        (
            [{"id": "a", "contents": "x"}],
            [{"id": 1, "question": "q", "golden_answers": [None]}],
            "every answer",
        ),
    ],
)
def test_jsonl_malformed_lines_raise_with_location(
    tmp_path: Path, corpus_lines: list[object], question_lines: list[object], message: str
) -> None:
    corpus = (
        write_lines(tmp_path / "corpus.jsonl", corpus_lines) if corpus_lines else tmp_path / "corpus.jsonl"
    )
    if not corpus_lines:
        corpus.write_text("\n", encoding="utf-8")
    questions = write_lines(
        tmp_path / "test.jsonl", question_lines or [{"id": 1, "question": "q", "golden_answers": "x"}]
    )
    with pytest.raises(JsonlFormatError, match=re.escape(message)):
        jsonl_task(corpus, {"test": questions})


def test_jsonl_rejects_unknown_splits_and_round_trips_small_tasks(tmp_path: Path) -> None:
    small = Task(
        "small",
        Corpus([Passage("d1", 'A "quoted" title', "line one\nline two")]),
        {"test": (Question("q1", "Q?", ("Alpha", "Beta"), ("d1",), "k", 2, "test"),)},
    )
    paths = write_flashrag(small, tmp_path)
    loaded = jsonl_task(paths["corpus"], {"test": paths["test"]}, name="small")
    assert loaded.corpus.fingerprint() == small.corpus.fingerprint()
    assert loaded.questions("test") == small.questions("test")
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        jsonl_task(paths["corpus"], {"holdout": paths["test"]})


# ----------------------------------------------------------------------------- registry
def test_registry_lists_and_loads_tasks(task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tasks.available_tasks() == ("factbook", "jsonl", "synthetic")
    assert tasks.load_task("factbook") is task
    with pytest.raises(ValueError, match="known tasks: factbook, jsonl, synthetic"):
        tasks.load_task("hotpotqa")
    paths = write_flashrag(
        Task("t", Corpus([Passage("d", "T", "x")]), {"test": (Question("q", "Q?", ("x",)),)}), tmp_path
    )
    loaded = tasks.load_task(
        "jsonl", corpus_path=paths["corpus"], splits={"test": paths["test"]}, name="mine"
    )
    assert loaded.name == "mine" and len(loaded.questions("test")) == 1

    calls: list[dict[str, int]] = []
    fake = types.ModuleType("tasks.synthetic")

    def synthetic_task(n_passages: int = 10_000, seed: int = 0) -> Task:
        calls.append({"n_passages": n_passages, "seed": seed})
        return Task("synthetic", Corpus([Passage("s0", "S", "text")]), {})

    fake.synthetic_task = synthetic_task  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tasks.synthetic", fake)
    assert tasks.load_task("synthetic", n_passages=5, seed=3).name == "synthetic"
    assert calls == [{"n_passages": 5, "seed": 3}]


def test_listing_tasks_imports_no_loader() -> None:
    code = "import sys, tasks; tasks.available_tasks(); print('tasks.synthetic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_doctests() -> None:
    stages = (factbook.source, factbook.passages, factbook.fields, factbook.questions)
    for module in (*stages, text, storage, jsonl, registry):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
