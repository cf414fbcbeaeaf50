"""Task sets for SearchQA: the bundled Factbook task, a FlashRAG JSONL loader, synthetic corpora.

``load_task(name, **kwargs)`` builds any of them; the shared records live in ``tasks.records``.
"""

from tasks.records import (
    SPLITS,
    Corpus,
    Passage,
    Question,
    Task,
    question_to_dict,
    split_counts,
)
from tasks.registry import available_tasks, load_task
from tasks.storage import atomic_write_lines

__all__ = [
    "SPLITS",
    "Corpus",
    "Passage",
    "Question",
    "Task",
    "atomic_write_lines",
    "available_tasks",
    "load_task",
    "question_to_dict",
    "split_counts",
]
