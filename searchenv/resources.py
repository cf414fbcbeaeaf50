"""Tasks and retrievers shared by every env in a process.

A sync vector env of eight envs must not hold eight copies of a corpus or an index, and a
second env construction must load the cached index rather than rebuild it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from searchenv.retrieval.base import Retriever
from tasks.records import Corpus, Task

_lock = threading.Lock()
_tasks: dict[str, Task] = {}
_retrievers: dict[tuple[str, str, str], Retriever] = {}


def _key(kwargs: Mapping[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=str)


def shared_task(task: str | Task, **task_kwargs: Any) -> Task:
    """The task by name (built once per process and kwargs), or the given Task itself."""
    if isinstance(task, Task):
        if task_kwargs:
            raise ValueError("task_kwargs only apply when the task is given by name")
        return task
    key = f"{task}:{_key(task_kwargs)}"
    with _lock:
        if key not in _tasks:
            from tasks import load_task

            _tasks[key] = load_task(task, **task_kwargs)
        return _tasks[key]


def shared_retriever(corpus: Corpus, backend: str, **retriever_kwargs: Any) -> Retriever:
    """The retriever for this corpus, backend and parameters: loaded once per process."""
    key = (corpus.fingerprint(), backend, _key(retriever_kwargs))
    with _lock:
        if key not in _retrievers:
            from searchenv.retrieval import load_retriever

            _retrievers[key] = load_retriever(corpus, backend, **retriever_kwargs)
        return _retrievers[key]
