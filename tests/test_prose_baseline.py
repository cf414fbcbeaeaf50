"""The bm25 baseline reads entity prose it was never written for (issue 17): well above random on
the held-out ``zones`` dataset (``tasks/prose.py``), while every factbook passage still takes
the ``label: value`` path (so the golden factbook figures hold)."""

from __future__ import annotations

import doctest

import pytest

from agents import extract
from agents.extract import answer_type, is_prose, prose_answer
from agents.rollout import run_episodes
from agents.scripted import make_policy
from searchenv.metrics import bootstrap_ci
from searchenv.resources import shared_task
from tasks import prose
from tasks.dataset import DatasetSpec
from tasks.factbook import factbook_task
from tasks.text import normalize_answer


@pytest.fixture(scope="module", params=prose.KINDS)
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DatasetSpec:
    return DatasetSpec.from_file(prose.write(request.param, tmp_path_factory.mktemp(request.param)))


def test_every_answer_is_a_span_of_its_gold_passage(dataset: DatasetSpec) -> None:
    task = shared_task("jsonl", **dataset.task_kwargs())
    questions = [q for split in ("train", "dev", "test") for q in task.questions(split)]
    assert len(questions) > 1000
    for q in questions:
        (doc_id,) = q.supporting_doc_ids
        passage = task.corpus[doc_id]
        assert is_prose(passage.text), doc_id
        assert normalize_answer(q.answers[0]) in normalize_answer(f"{passage.title} {passage.text}"), q.qid


def test_no_factbook_passage_reads_as_prose() -> None:
    assert not [doc_id for doc_id, passage in factbook_task().corpus.items() if is_prose(passage.text)]


def test_bm25_beats_random_by_a_wide_margin_on_unseen_prose(dataset: DatasetSpec) -> None:
    env = {"task": "jsonl", "task_kwargs": dataset.task_kwargs(), "split": "test"}
    ids = [q.qid for q in shared_task("jsonl", **dataset.task_kwargs()).questions("test")][:120]
    em = {}
    for name in ("random", "bm25"):
        results = run_episodes(make_policy(name, seed=0), env, question_ids=ids, progress=False)
        em[name] = bootstrap_ci([float(r.correct) for r in results], n_resamples=500, seed=0)
    assert em["bm25"].low > em["random"].high + 0.10, em


@pytest.mark.parametrize(
    ("question", "text", "expected"),
    [
        (
            "When was it founded?",
            "It grew fast. The town was founded on 4 July 1776 by settlers.",
            "4 July 1776",
        ),
        ("What is the chemical symbol of iron?", "Iron is a metal. Its chemical symbol is Fe.", "Fe"),
        ("Who discovered the element?", "It was discovered by Marie Curie in Paris.", "Marie Curie"),
        (
            "Which city is the capital of Peru?",
            "The seat of its government is the city of Lima, its capital.",
            "Lima",
        ),
        ("What is the main export of Chad?", "Its main export is raw cotton, sold abroad.", "raw cotton"),
    ],
)
def test_prose_answer_picks_the_span_the_question_asks_for(question: str, text: str, expected: str) -> None:
    assert prose_answer(question, "Entity", text) == expected, answer_type(question)


def test_doctests() -> None:
    for module in (extract, prose):
        assert doctest.testmod(module).failed == 0, module.__name__
