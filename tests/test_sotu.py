"""The second dataset (State of the Union QA, from the sotu package) and the bm25 baseline on it:
well above random on prose, while no factbook question takes the prose path (issue 11, item 2)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from agents import extract
from agents.extract import question_form
from agents.rollout import run_episodes
from agents.scripted import make_policy
from searchenv.metrics import bootstrap_ci
from searchenv.resources import shared_task
from tasks import sotu
from tasks.dataset import DatasetSpec
from tasks.factbook import factbook_task
from tasks.text import normalize_answer


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> DatasetSpec:
    """The first 12 messages (1790-1801), built from the installed package."""
    folder = tmp_path_factory.mktemp("sotu")
    return DatasetSpec.from_file(sotu.write(folder, limit=12))


def test_small_dataset_is_flashrag_with_evidence_and_three_splits(small: DatasetSpec) -> None:
    corpus = [json.loads(line) for line in Path(small.corpus).read_text(encoding="utf-8").splitlines()]
    assert set(corpus[0]) == {"id", "contents"} and corpus[0]["contents"].startswith('"George Washington — ')
    task = shared_task("jsonl", **small.task_kwargs())
    assert task.name == "sotu" and small.evidence_field == "metadata.supporting_ids"
    counts = {split: len(task.questions(split)) for split in ("train", "dev", "test")}
    assert sum(counts.values()) > 100 and all(counts.values()), counts  # up to 12 per message
    kinds = {q.kind for split in counts for q in task.questions(split)}
    assert kinds == {"cloze", "speaker", "year"}
    for split in counts:
        for q in task.questions(split):
            (doc_id,) = q.supporting_doc_ids
            passage = task.corpus[doc_id]
            contents = normalize_answer(f"{passage.title} {passage.text}")
            assert all(normalize_answer(a) in contents for a in q.answers), (q.qid, q.answers)
            assert q.qid.startswith("q") and len(q.qid) == 13  # a hash: no kind, year or name in it


def test_the_build_is_deterministic(small: DatasetSpec, tmp_path: Path) -> None:
    again = DatasetSpec.from_file(sotu.write(tmp_path, limit=12))
    for mine, theirs in [
        (small.corpus, again.corpus),
        *zip(dict(small.questions).values(), dict(again.questions).values()),
    ]:
        assert Path(mine).read_bytes() == Path(theirs).read_bytes()


def test_no_factbook_question_takes_the_prose_path() -> None:
    """The bm25 baseline's factbook behaviour is untouched: none of its questions has a form."""
    task = factbook_task()
    assert not [q.qid for qs in task.splits.values() for q in qs if question_form(q.question) is not None]


def test_bm25_scores_well_above_random_on_the_second_dataset(small: DatasetSpec) -> None:
    env = {"task": "jsonl", "task_kwargs": small.task_kwargs(), "split": "train"}
    ids = [q.qid for q in shared_task("jsonl", **small.task_kwargs()).questions("train")]
    em = {}
    for name in ("random", "bm25"):
        results = run_episodes(make_policy(name, seed=0), env, question_ids=ids, progress=False)
        em[name] = bootstrap_ci([float(r.correct) for r in results], n_resamples=500, seed=0)
    assert em["bm25"].low > em["random"].high + 0.5, em


def test_doctests() -> None:
    for module in (extract, sotu):
        assert doctest.testmod(module).failed == 0, module.__name__
