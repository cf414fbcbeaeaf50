"""Start a ``searchenv serve`` process from Python and wait until it answers (tests, benchmarks, scripts).

with ServerProcess("factbook", "bm25s") as server:      # a free loopback port
    env = gym.make("SearchQA-v0", backend=server.url)
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def get_health(host: str, port: int, timeout_s: float = 2.0) -> dict[str, Any]:
    """The server's ``/health`` answer; ``OSError`` or ``ValueError`` if it does not give one."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"GET /health answered HTTP {response.status}")
        answer = json.loads(body)
    finally:
        connection.close()
    if not isinstance(answer, dict):
        raise ValueError("GET /health did not answer a JSON object")
    return answer


class ServerProcess:
    """A ``searchenv serve`` subprocess on ``host:port`` (a free port unless given).

    Args:
        task: the task to serve (``factbook``, ``synthetic-100k``, ...).
        backend: the index backend.
        host: the interface to bind.
        port: the port; a free one when None. Kept across :meth:`stop` / :meth:`start`, so a
            restart serves at the same URL.
        extra_args: more ``searchenv serve`` options, e.g. ``["--top-k-max", "50"]``.
        log: a file that receives the server's output (else it is discarded).
    """

    def __init__(
        self,
        task: str = "factbook",
        backend: str = "bm25s",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.log = Path(log) if log is not None else None
        self.command = [sys.executable, "-m", "searchenv.cli", "serve", "--task", task, "--backend", backend]
        self.command += ["--host", host, "--port", str(self.port), *extra_args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Start the server and wait until ``/health`` answers; returns that answer.

        Raises:
            RuntimeError: if the process exits first or does not answer within ``timeout_s``
                (the message holds the end of its log when there is one).
        """
        self.launch()
        return self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting (do other work, then :meth:`wait_ready`)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the server at {self.url} is already running")
        if self.log is not None:
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Wait until the launched server answers ``/health``; returns that answer (see :meth:`start`)."""
        if self.process is None:
            raise RuntimeError("wait_ready() before launch()")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode}{self._log_tail()}")
            try:
                return get_health(self.host, self.port)
            except (OSError, ValueError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server at {self.url} did not answer within {timeout_s:g} s{self._log_tail()}")

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it takes over 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return ":\n" + self.log.read_text(encoding="utf-8", errors="replace")[-2000:]
