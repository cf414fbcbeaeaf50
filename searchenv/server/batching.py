"""An asyncio micro-batcher: requests that arrive together are answered by one ``search_batch`` call.

    handler ── search(queries, k) ──> queue ──> worker: collect ──> one thread: search_batch ──> futures

The worker takes the first waiting request, gathers the others that arrive within ``max_wait_s``
of it (up to ``max_batch`` queries), and runs the batch on a single search thread, so the event
loop keeps accepting requests meanwhile; those form the next batch (a batch of a few queries
runs on the loop instead: two thread hand-offs cost more than it). Requests asking for
different ``k`` share the batch but not the call: one ``search_batch`` per distinct ``k``, so
every answer is exactly what the retriever returns for that ``k``.

The wait is skipped while traffic is sequential (the previous batch held a single request): a
lone client, such as one env stepping through the remote backend, pays no added latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class BatcherStats:
    """Counters since start: requests and queries answered, ``search_batch`` calls made."""

    requests: int
    queries: int
    batches: int
    largest_batch: int


@dataclass
class _Pending(Generic[R]):
    """One request waiting for its results."""

    queries: Sequence[str]
    k: int
    future: asyncio.Future[list[R]]
    arrived: float


class MicroBatcher(Generic[R]):
    """Gathers concurrent ``search(queries, k)`` calls into batched calls of ``search_batch``.

    Use ``await start()`` inside the running event loop (an app's lifespan) and ``await close()``
    at shutdown. ``search_batch`` runs on one dedicated thread, so it is never called
    concurrently (backends need not be thread-safe).

    Args:
        search_batch: ``(queries, k) -> one result per query``, e.g. ``Retriever.search_batch``.
        max_batch: dispatch once this many queries are gathered (a request larger than this is
            a batch of its own; it is never split).
        max_wait_s: how long the first request of a batch waits for company.
        inline_queries: batches of at most this many queries run on the event loop itself
            (a short block), larger ones on the search thread (the loop keeps serving).
    """

    def __init__(
        self,
        search_batch: Callable[[Sequence[str], int], list[R]],
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.0015,
        inline_queries: int = 8,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_s >= 0, got {max_batch}, {max_wait_s}")
        self.inline_queries = inline_queries
        self._search_batch = search_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending[R]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._concurrent = False
        self._requests = self._queries = self._batches = self._largest = 0

    async def start(self) -> None:
        """Start the worker in the running event loop."""
        if self._worker is not None:
            raise RuntimeError("MicroBatcher.start() called twice")
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-batch")
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Stop the worker; requests still waiting fail with ``RuntimeError``."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def stats(self) -> BatcherStats:
        """The counters so far."""
        return BatcherStats(self._requests, self._queries, self._batches, self._largest)

    async def search(self, queries: Sequence[str], k: int) -> list[R]:
        """One result per query, computed in a batch with whatever else is waiting.

        Raises:
            RuntimeError: if the batcher was not started.
            Exception: whatever ``search_batch`` raised for these queries (other requests of
                the same batch are unaffected).
        """
        if self._queue is None:
            raise RuntimeError("MicroBatcher.search() before start()")
        if not queries:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[R]] = loop.create_future()
        self._queue.put_nowait(_Pending(queries, k, future, loop.time()))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            try:
                if sum(len(pending.queries) for pending in batch) <= self.inline_queries:
                    # Cheaper on the loop than two thread hand-offs (about 0.25 ms of CPU).
                    outcomes = self._run(batch)
                else:
                    outcomes = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as error:  # the executor itself failed: fail this batch, keep serving
                outcomes = [error] * len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.future.done():  # the client went away (its handler was cancelled)
                    continue
                if isinstance(outcome, BaseException):
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending[R]]:
        assert self._queue is not None
        first = await self._queue.get()
        batch, size = [first], len(first.queries)
        if self._concurrent and size < self.max_batch:
            # Sleep, then drain: waiting on queue.get() with a timeout can drop an item when
            # the timeout and the put race (asyncio.wait_for before Python 3.12).
            remaining = first.arrived + self.max_wait_s - loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
        while size < self.max_batch and not self._queue.empty():
            pending = self._queue.get_nowait()
            batch.append(pending)
            size += len(pending.queries)
        self._concurrent = len(batch) > 1
        return batch

    def _run(self, batch: list[_Pending[R]]) -> list[list[R] | BaseException]:
        """On the search thread: one ``search_batch`` per distinct k; failures stay per request."""
        outcomes: list[list[R] | BaseException] = [[] for _ in batch]
        by_k: dict[int, list[int]] = {}
        for index, pending in enumerate(batch):
            by_k.setdefault(pending.k, []).append(index)
        for k, members in by_k.items():
            queries = [query for index in members for query in batch[index].queries]
            try:
                results = self._search_batch(queries, k)
            except Exception:
                # One bad request must not fail its neighbours: rerun each request alone.
                for index in members:
                    outcomes[index] = self._run_alone(batch[index])
                continue
            self._batches += 1
            self._largest = max(self._largest, len(queries))
            start = 0
            for index in members:
                end = start + len(batch[index].queries)
                outcomes[index] = results[start:end]
                start = end
        self._requests += len(batch)
        self._queries += sum(len(pending.queries) for pending in batch)
        return outcomes

    def _run_alone(self, pending: _Pending[R]) -> list[R] | BaseException:
        try:
            results = self._search_batch(pending.queries, pending.k)
        except Exception as error:
            return error
        self._batches += 1
        return results


__all__ = ["BatcherStats", "MicroBatcher"]
