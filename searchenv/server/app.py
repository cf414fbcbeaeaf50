"""The retrieval server's FastAPI app: Search-R1's ``/retrieve``, plus ``/read`` and ``/health``.

    app = create_app(task, retriever)      # any tasks.Task and Retriever over its corpus
    uvicorn.run(app, host="127.0.0.1", port=8000)

Concurrent ``/retrieve`` requests are answered together by one ``search_batch`` call
(:mod:`searchenv.server.batching`). Every response carries the corpus fingerprint in the
``X-Corpus-Fingerprint`` header, so a client notices a server restarted on another corpus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from searchenv.retrieval.base import Hit, Retriever
from searchenv.server.batching import MicroBatcher
from searchenv.server.protocol import (
    RequestError,
    ServerLimits,
    check_body_size,
    check_declared_length,
    parse_json_object,
    parse_read,
    parse_retrieve,
    read_response,
    retrieve_response,
)
from tasks.records import Task

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
except ImportError as error:  # the server is an extra: importing stays possible, create_app says what to do
    _MISSING: ImportError | None = error
else:
    _MISSING = None

FINGERPRINT_HEADER = "X-Corpus-Fingerprint"
PROTOCOL = "search-r1"

logger = logging.getLogger(__name__)


def describe(task: Task, retriever: Retriever, limits: ServerLimits) -> dict[str, Any]:
    """What ``/health`` reports besides live counters: task, backend, corpus and index identity."""
    load_info = getattr(retriever, "load_info", None)
    meta = getattr(load_info, "meta", None) or {}
    return {
        "status": "ok",
        "protocol": PROTOCOL,
        "task": task.name,
        "backend": retriever.backend,
        "corpus_size": len(task.corpus),
        "corpus_fingerprint": task.corpus.fingerprint(),
        "index_key": meta.get("key"),
        "index_digest": meta.get("digest"),
        "limits": asdict(limits),
    }


def create_app(
    task: Task,
    retriever: Retriever,
    *,
    limits: ServerLimits | None = None,
    max_batch: int = 256,
    max_wait_ms: float = 1.5,
) -> FastAPI:
    """A FastAPI app serving ``retriever`` (built over ``task.corpus``) in Search-R1's protocol.

    Args:
        task: the task whose corpus the retriever indexes; documents and ``/read`` come from it.
        retriever: any :class:`~searchenv.retrieval.base.Retriever` over ``task.corpus``.
        limits: request limits (topk, queries per request, body size); defaults otherwise.
        max_batch: the micro-batcher dispatches once this many queries are waiting.
        max_wait_ms: how long a request waits for others to share its batch.

    Returns:
        The app; its lifespan starts and stops the micro-batcher, so serve it with uvicorn or
        drive it with Starlette's ``TestClient`` as a context manager.

    Raises:
        ImportError: if FastAPI is not installed (the ``server`` extra).
    """
    if _MISSING is not None:
        raise ImportError(
            "the retrieval server needs FastAPI and uvicorn: pip install -e .[server]"
        ) from _MISSING
    limits = limits or ServerLimits()
    corpus = task.corpus
    identity = describe(task, retriever, limits)
    fingerprint = identity["corpus_fingerprint"]
    batcher: MicroBatcher[list[Hit]] = MicroBatcher(
        retriever.search_batch, max_batch=max_batch, max_wait_s=max_wait_ms / 1000
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()

    app = FastAPI(
        title="SearchQA retrieval server",
        description="Search-R1's retrieval protocol over a SearchQA task's BM25 index.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    def answer(value: Any, status: int = 200) -> Response:
        # json.dumps straight to bytes: FastAPI's encoder walks every value and is several
        # times slower on large results.
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(body, status, {FINGERPRINT_HEADER: fingerprint}, media_type="application/json")

    async def body_of(request: Request) -> dict[str, Any]:
        check_declared_length(request.headers.get("content-length"), limits)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_body_size(size, limits)  # also bounds chunked uploads that declare no length
            chunks.append(chunk)
        return parse_json_object(b"".join(chunks))

    @app.post("/retrieve", openapi_extra={"requestBody": _body_schema("queries", with_topk=True)})
    async def retrieve(request: Request) -> Response:
        """Search-R1's endpoint: ranked documents (with scores if asked) for each query."""
        try:
            parsed = parse_retrieve(await body_of(request), limits)
        except RequestError as error:
            return answer(error.to_json(), error.status)
        try:
            hits = await batcher.search(parsed.queries, parsed.topk)
        except Exception as error:
            logger.exception("search failed")
            return answer({"detail": f"search failed: {type(error).__name__}: {error}", "field": None}, 500)
        return answer(retrieve_response(hits, corpus, parsed.return_scores))

    @app.post("/read", openapi_extra={"requestBody": _body_schema("ids", with_topk=False)})
    async def read(request: Request) -> Response:
        """Full passages (id, title, text, contents) by doc id, in the order asked."""
        try:
            doc_ids = parse_read(await body_of(request), limits, corpus)
        except RequestError as error:
            return answer(error.to_json(), error.status)
        return answer(read_response(doc_ids, corpus))

    @app.get("/health")
    async def health() -> Response:
        """Task, backend, corpus size and fingerprint, index key, limits and batching counters."""
        stats = batcher.stats()
        batching = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, **asdict(stats)}
        return answer({**identity, "batching": batching})

    return app


def _body_schema(field: str, *, with_topk: bool) -> dict[str, Any]:
    """The OpenAPI description of a request body (handlers parse the raw body themselves)."""
    properties: dict[str, Any] = {field: {"type": "array", "items": {"type": "string"}}}
    if with_topk:
        properties["topk"] = {"type": "integer", "minimum": 1, "nullable": True}
        properties["return_scores"] = {"type": "boolean", "default": False}
    schema = {"type": "object", "required": [field], "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}
