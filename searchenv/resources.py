"""Tasks and retrievers shared by every env in a process.

A sync vector env of eight envs must not hold eight copies of a corpus or an index, and a
second env construction must load the cached index rather than rebuild it. A task loaded from
files (``jsonl``) is keyed by its arguments *and* by each named file's path, size, mtime and
inode, so an edited file is loaded again (new answers, new passages), never served stale.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from searchenv.retrieval.base import Retriever
from tasks.records import Corpus, Task

_lock = threading.Lock()
# (task, kwargs) -> (signature of the files the kwargs name, the task): one entry per arguments,
# replaced when the files change, so editing a file does not grow the cache.
_tasks: dict[str, tuple[tuple[tuple[str, int, int, int], ...], Task]] = {}
_retrievers: dict[tuple[str, str, str], Retriever] = {}


def _key(kwargs: Mapping[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=str)


def shared_task(task: str | Task, **task_kwargs: Any) -> Task:
    """The task by name (built once per process, arguments and file contents), or the Task itself.

    Args:
        task: A task name (``factbook``, ``jsonl``, ``synthetic``) or a ``Task``.
        **task_kwargs: The loader's arguments (for ``jsonl``: ``corpus_path``, ``splits``, ...).

    Returns:
        The task; the same object while its arguments and files are unchanged.
    """
    if isinstance(task, Task):
        if task_kwargs:
            raise ValueError("task_kwargs only apply when the task is given by name")
        return task
    from tasks.dataset import file_signature

    key = f"{task}:{_key(task_kwargs)}"
    signature = file_signature(task_kwargs)
    with _lock:
        cached = _tasks.get(key)
        if cached is None or cached[0] != signature:
            from tasks import load_task

            loaded = load_task(task, **task_kwargs)
            _check_searchable(loaded, task_kwargs)
            _tasks[key] = (signature, loaded)
        return _tasks[key][1]


def _check_searchable(task: Task, task_kwargs: Mapping[str, Any]) -> None:
    """Refuse at load, naming the file, a corpus no index could hold: no passage has a search term."""
    from searchenv.retrieval.tokenize import Tokenizer

    tokenize = Tokenizer()
    if any(tokenize(f"{p.title} {p.text}") for p in task.corpus.passages()):
        return
    source = task_kwargs.get("corpus_path", f"task {task.name!r}")
    from tasks.jsonl import JsonlFormatError

    raise JsonlFormatError(
        f"{source}: no passage holds a searchable word (every one is empty, punctuation or stopwords), "
        "so no index can be built; give the passages text"
    )


def shared_retriever(corpus: Corpus, backend: str, **retriever_kwargs: Any) -> Retriever:
    """The retriever for this corpus, backend and parameters: loaded once per process."""
    key = (corpus.fingerprint(), backend, _key(retriever_kwargs))
    with _lock:
        if key not in _retrievers:
            from searchenv.retrieval import load_retriever

            _retrievers[key] = load_retriever(corpus, backend, **retriever_kwargs)
        return _retrievers[key]
