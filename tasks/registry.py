"""Task registry: ``load_task(name, **kwargs)`` for every task set SearchQA knows.

Loaders are imported only when asked for, so listing tasks never builds a corpus or imports
a generator's dependencies.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from tasks.records import Task

# name -> (module, function); the module is imported on first use.
_LOADERS: dict[str, tuple[str, str]] = {
    "factbook": ("tasks.factbook", "factbook_task"),
    "jsonl": ("tasks.jsonl", "jsonl_task"),
    "synthetic": ("tasks.synthetic", "synthetic_task"),
}


def available_tasks() -> tuple[str, ...]:
    """Names accepted by :func:`load_task`.

    >>> available_tasks()
    ('factbook', 'jsonl', 'synthetic')
    """
    return tuple(_LOADERS)


def load_task(name: str, /, **kwargs: Any) -> Task:
    """Build (or fetch the memoized) task ``name``; ``kwargs`` go to its loader.

    ``load_task("jsonl", corpus_path=..., splits={"test": ...})``,
    ``load_task("synthetic", n_passages=10_000, seed=0)``.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    module_name, function_name = _LOADERS[name]
    loader: Callable[..., Task] = getattr(import_module(module_name), function_name)
    task = loader(**kwargs)
    if not isinstance(task, Task):
        raise TypeError(f"{module_name}.{function_name} returned {type(task).__name__}, not a Task")
    return task


__all__ = ["available_tasks", "load_task"]
