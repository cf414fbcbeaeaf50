"""Which questions an episode may ask: the one place a split is filtered and subsampled.

The env draws from ``filter_questions(...)``; training, evaluation and the leaderboard pick
their question ids with ``select_questions`` and ``sample_question_ids``, so all of them agree
on what "the single-hop test questions" or "a 100-question subset" means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tasks.records import Question, Task


def filter_questions(
    task: Task, split: str, hops: int | Sequence[int] | None = None, kinds: Sequence[str] | None = None
) -> tuple[Question, ...]:
    """The questions of ``split``, kept when their hop count and kind are among those asked for.

    Raises ``ValueError`` naming the task, split and filters when nothing is left.
    """
    questions = task.questions(split)
    if hops is not None:
        wanted_hops = {hops} if isinstance(hops, int) else set(hops)
        questions = tuple(q for q in questions if q.hops in wanted_hops)
    if kinds is not None:
        wanted_kinds = set(kinds)
        questions = tuple(q for q in questions if q.kind in wanted_kinds)
    if not questions:
        raise ValueError(
            f"no questions left in split {split!r} of task {task.name!r} "
            f"after filtering hops={hops}, kinds={kinds}"
        )
    return questions


def select_questions(
    task: str | Task,
    split: str,
    *,
    hops: int | Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Question, ...]:
    """``filter_questions`` on a task given by name (loaded once per process) or as a ``Task``."""
    from searchenv.resources import shared_task

    return filter_questions(shared_task(task, **dict(task_kwargs or {})), split, hops, kinds)


def sample_question_ids(questions: Sequence[Question], limit: int | None, seed: int) -> list[str]:
    """All question ids, or ``limit`` of them drawn without replacement (seeded, split order kept).

    The subset depends only on ``seed`` and the split, so every agent of a comparison is asked
    the same questions.

    >>> from tasks.records import Question
    >>> qs = [Question(qid=f"q{i}", question="?", answers=("a",)) for i in range(5)]
    >>> sample_question_ids(qs, None, seed=0)
    ['q0', 'q1', 'q2', 'q3', 'q4']
    >>> len(sample_question_ids(qs, 2, seed=0))
    2
    """
    ids = [q.qid for q in questions]
    if limit is None or limit >= len(ids):
        return ids
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    chosen = np.random.default_rng(seed).choice(len(ids), size=limit, replace=False)
    return [ids[i] for i in sorted(chosen)]


def splits_holding(task: Task, question_id: str) -> list[str]:
    """The splits of ``task`` that hold a question whose readable or opaque id is ``question_id``.

    >>> from tasks.records import Corpus, Question, Task
    >>> task = Task("t", Corpus([]), {"train": (Question(qid="a", question="?", answers=("x",)),)})
    >>> splits_holding(task, "a"), splits_holding(task, "b")
    (['train'], [])
    """
    from searchenv.question_ids import opaque_question_id

    return [
        split
        for split, questions in task.splits.items()
        if any(question_id in (q.qid, opaque_question_id(q.qid)) for q in questions)
    ]
