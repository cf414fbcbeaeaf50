r"""Search-R1's retrieval protocol: request validation and response shapes, with no web framework.

Search-R1 (``search_r1/search/retrieval_server.py``), and the verl, SkyRL, GEM and rLLM tools
copied from it, speak this JSON::

    POST /retrieve {"queries": ["q1", ...], "topk": 3, "return_scores": true}
    -> {"result": [[{"document": {"id": "...", "contents": "\"Title\"\ntext"}, "score": 12.3}, ...], ...]}

With ``"return_scores": false`` (their default) each query's list holds the documents alone.
A missing or null ``topk`` means the server's default (3, as in Search-R1). ``contents`` follows
their wiki-18 corpus rows: the title in double quotes, a newline, then the text, since the
clients take ``contents.split("\n")[0]`` as the title.

Every rejection is a :class:`RequestError` carrying an HTTP status, the offending field and a
message that says how to fix the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchenv.retrieval.base import Hit
from tasks.records import Corpus, Passage

# Search-R1's ``--topk`` default: what a request without ``topk`` gets.
SEARCH_R1_DEFAULT_TOPK = 3


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for; anything beyond is answered with a 4xx.

    Attributes:
        default_topk: results per query when a request leaves ``topk`` out or null.
        top_k_max: the largest ``topk`` accepted.
        max_queries: the most queries (``/retrieve``) or ids (``/read``) in one request.
        max_body_bytes: the largest request body accepted, in bytes.
    """

    default_topk: int = SEARCH_R1_DEFAULT_TOPK
    top_k_max: int = 100
    max_queries: int = 1024
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        """Reject limits that would refuse every request."""
        if not 1 <= self.default_topk <= self.top_k_max:
            raise ValueError(
                f"need 1 <= default_topk <= top_k_max, got {self.default_topk}, {self.top_k_max}"
            )
        if self.max_queries < 1 or self.max_body_bytes < 64:
            raise ValueError("max_queries must be >= 1 and max_body_bytes >= 64")


@dataclass(frozen=True)
class RetrieveRequest:
    """A validated ``/retrieve`` request."""

    queries: tuple[str, ...]
    topk: int
    return_scores: bool


class RequestError(Exception):
    """A request the server refuses: an HTTP status, the field at fault and how to fix it."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The error body: FastAPI's ``detail`` key, plus the field at fault.

        >>> RequestError(422, "topk", "topk must be >= 1").to_json()
        {'detail': 'topk must be >= 1', 'field': 'topk'}
        """
        return {"detail": self.message, "field": self.field}


def check_declared_length(content_length: str | None, limits: ServerLimits) -> None:
    """Refuse a body whose declared ``Content-Length`` is too large, before reading it."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise RequestError(
            400, "Content-Length", f"Content-Length {content_length!r} is not a number"
        ) from None
    if declared > limits.max_body_bytes:
        raise _too_large(declared, limits)


def _too_large(size: int, limits: ServerLimits) -> RequestError:
    return RequestError(
        413,
        "body",
        f"request body of {size} bytes exceeds the limit of {limits.max_body_bytes}; "
        f"split the queries over several requests (at most {limits.max_queries} per request)",
    )


def check_body_size(size: int, limits: ServerLimits) -> None:
    """Refuse a body that has grown past the limit while being read (chunked uploads)."""
    if size > limits.max_body_bytes:
        raise _too_large(size, limits)


def parse_json_object(body: bytes) -> dict[str, Any]:
    r"""The body as a JSON object, or a 400/422 naming what is wrong.

    >>> parse_json_object(b'{"queries": []}')
    {'queries': []}
    >>> parse_json_object(b"\xff")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    searchenv.server.protocol.RequestError: request body is not valid UTF-8 (byte 0xff at offset 0); ...
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(
            400,
            "body",
            f"request body is not valid UTF-8 (byte 0x{body[error.start]:02x} at offset {error.start}); "
            "send UTF-8 encoded JSON",
        ) from None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise RequestError(
            400, "body", f"request body is not valid JSON ({error}); send a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise RequestError(
            422, "body", f"request body must be a JSON object, got {_json_type(value)}; e.g. {_EXAMPLE}"
        )
    return value


_EXAMPLE = '{"queries": ["capital of France"], "topk": 3, "return_scores": true}'


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _string_list(payload: Mapping[str, Any], field: str, limits: ServerLimits, example: str) -> list[str]:
    """``payload[field]`` as a list of strings, or a 422 saying what to send."""
    if field not in payload:
        raise RequestError(422, field, f"missing field {field!r}; send e.g. {example}")
    values = payload[field]
    if not isinstance(values, list):
        raise RequestError(
            422, field, f"{field!r} must be an array of strings, got {_json_type(values)}; e.g. {example}"
        )
    if len(values) > limits.max_queries:
        raise RequestError(
            422,
            field,
            f"{len(values)} entries in {field!r} exceed the limit of {limits.max_queries} per request; "
            "split them over several requests",
        )
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise RequestError(422, field, f"{field}[{i}] must be a string, got {_json_type(value)}")
    return values


def parse_retrieve(payload: Mapping[str, Any], limits: ServerLimits) -> RetrieveRequest:
    """Validate a ``/retrieve`` body (see the module docstring for the fields).

    >>> parse_retrieve({"queries": ["a"], "topk": None}, ServerLimits())
    RetrieveRequest(queries=('a',), topk=3, return_scores=False)
    >>> parse_retrieve({"queries": ["a"], "topk": 0}, ServerLimits())
    Traceback (most recent call last):
    ...
    searchenv.server.protocol.RequestError: topk must be between 1 and 100, got 0; send e.g. "topk": 3
    """
    queries = _string_list(payload, "queries", limits, _EXAMPLE)
    topk = payload.get("topk")
    if topk is None:
        topk = limits.default_topk
    elif isinstance(topk, bool) or not isinstance(topk, int):
        raise RequestError(
            422, "topk", f'topk must be an integer, got {_json_type(topk)}; send e.g. "topk": 3'
        )
    elif not 1 <= topk <= limits.top_k_max:
        raise RequestError(
            422, "topk", f'topk must be between 1 and {limits.top_k_max}, got {topk}; send e.g. "topk": 3'
        )
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RequestError(
            422,
            "return_scores",
            f"return_scores must be true or false, got {_json_type(return_scores)}",
        )
    return RetrieveRequest(tuple(queries), topk, return_scores)


def parse_read(payload: Mapping[str, Any], limits: ServerLimits, corpus: Corpus) -> tuple[str, ...]:
    """Validate a ``/read`` body ``{"ids": [...]}``: every id must be in the corpus (else a 404)."""
    ids = _string_list(payload, "ids", limits, '{"ids": ["fr/government/000"]}')
    unknown = [doc_id for doc_id in ids if doc_id not in corpus]
    if unknown:
        shown = ", ".join(repr(doc_id) for doc_id in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise RequestError(
            404, "ids", f"unknown doc ids: {shown}{more}; use ids from a /retrieve result (document.id)"
        )
    return tuple(ids)


def search_r1_contents(passage: Passage) -> str:
    r"""A passage in wiki-18's ``contents`` format: ``"title"`` on the first line, then the text.

    >>> search_r1_contents(Passage("d1", "France — Government", "Capital: Paris"))
    '"France — Government"\nCapital: Paris'
    """
    # Clients read the first line as the title, so a title must not span lines.
    title = " ".join(passage.title.splitlines())
    return f'"{title}"\n{passage.text}'


def retrieve_response(
    hits_per_query: Sequence[Sequence[Hit]], corpus: Corpus, return_scores: bool
) -> dict[str, Any]:
    r"""The ``/retrieve`` answer: per query, ``{"document", "score"}`` pairs or bare documents.

    >>> corpus = Corpus([Passage("d1", "T", "x")])
    >>> retrieve_response([[Hit("d1", 2.5)], []], corpus, True)
    {'result': [[{'document': {'id': 'd1', 'contents': '"T"\nx'}, 'score': 2.5}], []]}
    >>> retrieve_response([[Hit("d1", 2.5)]], corpus, False)
    {'result': [[{'id': 'd1', 'contents': '"T"\nx'}]]}
    """
    result: list[list[Any]] = []
    for hits in hits_per_query:
        documents = [{"id": hit.doc_id, "contents": search_r1_contents(corpus[hit.doc_id])} for hit in hits]
        if return_scores:
            result.append([{"document": doc, "score": hit.score} for doc, hit in zip(documents, hits)])
        else:
            result.append(documents)
    return {"result": result}


def read_response(doc_ids: Sequence[str], corpus: Corpus) -> dict[str, Any]:
    """The ``/read`` answer: the full passages, in the order asked, with title and text apart."""
    documents = []
    for doc_id in doc_ids:
        passage = corpus[doc_id]
        documents.append(
            {
                "id": doc_id,
                "title": passage.title,
                "text": passage.text,
                "contents": search_r1_contents(passage),
            }
        )
    return {"result": documents}
