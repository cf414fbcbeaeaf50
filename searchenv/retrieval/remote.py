"""The ``remote`` backend: a :class:`Retriever` that searches through a ``searchenv serve`` server.

    env = gym.make("SearchQA-v0", backend="http://127.0.0.1:8000")

Any backend name that is an ``http://`` or ``https://`` URL selects it (``load_retriever``
dispatches here and skips the index cache). Only search goes over HTTP, in Search-R1's
``/retrieve`` protocol; the env reads passages from its own corpus as before. At construction
the client checks, through ``/health``, that the server serves the same corpus (same
fingerprint), and every response carries the fingerprint again, so a server restarted on
another corpus is noticed too.

Connections are kept alive, one per thread (and per process, for forked vector envs). A kept
connection the server has closed is reopened at once; other connection failures are retried
a bounded number of times with backoff, then raise :class:`RemoteUnavailableError`, which names
the URL, what was tried and how to start the server. Every socket operation has a timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from searchenv.retrieval.base import Hit
from searchenv.retrieval.ranking import check_k, check_query

FINGERPRINT_HEADER = "X-Corpus-Fingerprint"
# A kept connection the server closed fails at once with one of these; reopening is not a retry.
# Worth retrying: the server is starting, overloaded or behind a proxy that lost it. A 500 is
# the search itself failing, which a retry would only repeat.
_TRANSIENT = (502, 503, 504)
_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


def is_remote_backend(backend: object) -> bool:
    """True when a backend name is a server URL.

    >>> is_remote_backend("http://127.0.0.1:8000"), is_remote_backend("bm25s")
    (True, False)
    """
    return isinstance(backend, str) and backend.lower().startswith(("http://", "https://"))


class RemoteUnavailableError(ConnectionError):
    """The retrieval server did not answer after the bounded retries."""


class RemoteRequestError(ValueError):
    """The retrieval server refused a request (4xx), failed a search (500) or answered in another shape."""


class RemoteRetriever:
    """Searches a corpus through a retrieval server that serves the same corpus.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000`` (a trailing ``/retrieve``, as in
            Search-R1's ``search_url``, is accepted).
        corpus: the ``tasks.records.Corpus`` the caller expects; the server must serve it.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for an answer; a timed-out request is not retried.
        tries: connection attempts per request before giving up.
        backoff_s: the first pause between tries; each later pause is three times longer
            (3 tries: 0.25 s then 0.75 s).

    Raises:
        RemoteUnavailableError: if the server cannot be reached.
        RemoteRequestError: if the server serves another corpus or does not speak the protocol.
    """

    backend = "remote"

    def __init__(
        self,
        url: str,
        corpus: Any,
        *,
        connect_timeout: float = 1.0,
        read_timeout: float = 30.0,
        tries: int = 3,
        backoff_s: float = 0.25,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"remote backend needs a URL like http://127.0.0.1:8000, got {url!r}")
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        path = parts.path.rstrip("/")
        self._prefix = path.removesuffix("/retrieve")
        self.url = f"{parts.scheme}://{parts.netloc}{self._prefix}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tries = tries
        self.backoff_s = backoff_s
        self._local = threading.local()
        self.fingerprint: str = corpus.fingerprint()
        self.server_info: dict[str, Any] = {}
        try:
            self.server_info = self._request("GET", "/health", None, check_fingerprint=False)
        except RemoteRequestError as error:
            raise RemoteRequestError(
                f"{error}. The remote backend needs a `searchenv serve` server: it checks the corpus "
                "through /health, which other Search-R1 servers lack"
            ) from None
        self._check_server(corpus)

    # ------------------------------------------------------------------------------ search

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` hits for ``query``, as the server's backend ranks them."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` hits per query, in requests of at most the server's ``max_queries``."""
        k = check_k(k)
        queries = [check_query(query) for query in queries]
        if k == 0 or not queries:
            return [[] for _ in queries]
        if k > self.top_k_max:
            raise ValueError(
                f"k={k} exceeds the server's top_k_max={self.top_k_max} (searchenv serve --top-k-max)"
            )
        results: list[list[Hit]] = []
        step = self.max_queries
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            body = json.dumps({"queries": chunk, "topk": k, "return_scores": True}).encode("utf-8")
            answer = self._request("POST", "/retrieve", body)
            results.extend(self._hits(answer, len(chunk)))
        return results

    def close(self) -> None:
        """Close this thread's kept connection (later calls reopen one)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    # ------------------------------------------------------------------------------ helpers

    @property
    def top_k_max(self) -> int:
        """The largest k the server accepts."""
        return int(self.server_info["limits"]["top_k_max"])

    @property
    def max_queries(self) -> int:
        """The most queries the server accepts in one request."""
        return int(self.server_info["limits"]["max_queries"])

    def start_command(self) -> str:
        """The command that starts a server this client would accept."""
        task = self.server_info.get("task", "<task>")
        backend = self.server_info.get("backend", "bm25s")
        return f"searchenv serve --task {task} --backend {backend} --host {self._host} --port {self._port}"

    def _check_server(self, corpus: Any) -> None:
        info = self.server_info
        if not isinstance(info, dict) or info.get("protocol") != "search-r1" or "limits" not in info:
            raise RemoteRequestError(
                f"{self.url}/health did not answer like a searchenv retrieval server: {info!r}"
            )
        if info.get("corpus_fingerprint") != self.fingerprint:
            raise RemoteRequestError(
                f"the retrieval server at {self.url} serves task {info.get('task')!r} "
                f"({info.get('corpus_size')} passages, corpus fingerprint "
                f"{str(info.get('corpus_fingerprint'))[:12]}), "
                f"but this env's corpus has {len(corpus)} passages, fingerprint {self.fingerprint[:12]}: "
                f"start the server on the env's task (searchenv serve --task ...) or use the server's task"
            )

    def _hits(self, answer: Any, n_queries: int) -> list[list[Hit]]:
        try:
            rows = answer["result"]
            hits = [[Hit(str(item["document"]["id"]), float(item["score"])) for item in row] for row in rows]
        except (KeyError, TypeError, ValueError) as error:
            raise RemoteRequestError(
                f"{self.url}/retrieve answered an unexpected shape ({error!r})"
            ) from None
        if len(hits) != n_queries:
            raise RemoteRequestError(
                f"{self.url}/retrieve answered {len(hits)} results for {n_queries} queries"
            )
        return hits

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's kept connection, or a new one: ``(connection, is_new)``."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a forked child must not share the socket
            local.connection, local.pid = None, os.getpid()
        if local.connection is not None:
            return local.connection, False
        factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = factory(self._host, self._port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError as error:  # unlike a read timeout, worth retrying
            raise ConnectionError(f"connect timed out after {self.connect_timeout:g} s") from error
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)  # connect was bounded; now bound each read
        local.connection = connection
        return connection, True

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str | None]:
        """One request on a kept connection; a stale one is replaced and the request resent once."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        connection, is_new = self._connection()
        try:
            connection.request(method, self._prefix + path, body, headers)
            response = connection.getresponse()
        except _STALE_CONNECTION:
            self._drop_connection()
            if is_new:
                raise
            connection, _ = self._connection()
            connection.request(method, self._prefix + path, body, headers)
            response = connection.getresponse()
        data = response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, data, response.getheader(FINGERPRINT_HEADER)

    def _request(self, method: str, path: str, body: bytes | None, *, check_fingerprint: bool = True) -> Any:
        """Send with bounded retries (search is idempotent); the parsed JSON answer."""
        started = time.monotonic()
        failures: list[str] = []
        for attempt in range(self.tries):
            if attempt:
                time.sleep(self.backoff_s * 3 ** (attempt - 1))
            try:
                status, data, fingerprint = self._exchange(method, path, body)
            except TimeoutError as error:
                self._drop_connection()
                raise RemoteUnavailableError(
                    f"the retrieval server at {self.url} did not answer {method} {path} within "
                    f"{self.read_timeout:g} s ({error}); it may be overloaded or stuck. Not retried: "
                    f"raise read_timeout, or restart it with: {self.start_command()}"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                failures.append(f"{type(error).__name__}: {error}")
                continue
            if status in _TRANSIENT:
                failures.append(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
                continue
            return self._decode(method, path, status, data, fingerprint, check_fingerprint)
        raise RemoteUnavailableError(
            f"the retrieval server at {self.url} is not answering: {method} {path} failed {self.tries} "
            f"times over {time.monotonic() - started:.1f} s (last error: {failures[-1]}). "
            f"Is it running? Start it with: {self.start_command()}"
        )

    def _decode(
        self,
        method: str,
        path: str,
        status: int,
        data: bytes,
        fingerprint: str | None,
        check_fingerprint: bool,
    ) -> Any:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if status >= 400:
            detail = (
                answer.get("detail") if isinstance(answer, dict) else data[:200].decode("utf-8", "replace")
            )
            raise RemoteRequestError(
                f"the retrieval server at {self.url} answered {method} {path} with HTTP {status}: {detail}"
            )
        if answer is None:
            raise RemoteRequestError(f"{self.url}{path} answered HTTP {status} with a body that is not JSON")
        if check_fingerprint and fingerprint != self.fingerprint:
            raise RemoteRequestError(
                f"the retrieval server at {self.url} now serves another corpus (fingerprint "
                f"{str(fingerprint)[:12]}, expected {self.fingerprint[:12]}): "
                "was it restarted on another task? "
                f"Start it with: {self.start_command()}"
            )
        return answer


__all__ = ["RemoteRequestError", "RemoteRetriever", "RemoteUnavailableError", "is_remote_backend"]
