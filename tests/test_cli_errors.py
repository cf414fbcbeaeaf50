"""Every command of the README fails like a tool: one ``error:`` line, exit 2 or 1, no traceback.

The commands run as real subprocesses, several at a time (each costs its imports); every bad
input is one that must fail before heavy work (a model load, an index build), so the whole
table takes seconds. In-process tests below cover the mechanism (``searchenv.cli_errors``).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from searchenv.cli_errors import (
    DEBUG_ENV,
    ArgumentParser,
    CommandError,
    UsageError,
    reports_errors,
    user_input,
)
from searchenv.server.launch import get_health

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m"]
SEARCHENV = [shutil.which("searchenv", path=str(Path(sys.executable).parent)) or "searchenv"]
if not Path(SEARCHENV[0]).is_file():  # not installed as a script: the same main via -m
    SEARCHENV = [*PY, "searchenv.cli"]
TAKEN_PORT = "{taken_port}"
TMP = "{tmp}"

# (case id, command, expected exit code, a phrase the one line must hold)
CASES: list[tuple[str, list[str], int, str]] = [
    # The six commands of issue 20.
    ("play-question-in-train", [*SEARCHENV, "play", "--question-id", "capital/cd"], 2, "add --split train"),
    ("play-unknown-task", [*SEARCHENV, "play", "--task", "nosuch"], 2, "unknown task 'nosuch'"),
    (
        "train-missing-init",
        [*PY, "agents.train", "--algo", "grpo", "--init", "/nonexistent/run", "--out", f"{TMP}/grpo"],
        2,
        "/nonexistent/run is neither a checkpoint nor a run folder",
    ),
    ("evaluate-missing-checkpoint", [*PY, "agents.evaluate", "--checkpoint", "/nonexistent"], 2, "neither"),
    (
        "train-unknown-model",
        [*PY, "agents.train", "--model", "nosuchmodel", "--out", f"{TMP}/model"],
        2,
        "unknown model source 'nosuchmodel'",
    ),
    ("serve-port-out-of-range", [*SEARCHENV, "serve", "--port", "99999"], 2, "99999 is not a port"),
    # searchenv play / index / serve
    ("play-unknown-backend", [*SEARCHENV, "play", "--backend", "nosuch"], 2, "unknown backend 'nosuch'"),
    ("play-unknown-split", [*SEARCHENV, "play", "--split", "holdout"], 2, "invalid choice: 'holdout'"),
    ("index-unknown-task", [*SEARCHENV, "index", "build", "--task", "nosuch"], 2, "unknown task"),
    ("index-jsonl-without-files", [*SEARCHENV, "index", "info", "--task", "jsonl"], 2, "needs its files"),
    ("serve-port-taken", [*SEARCHENV, "serve", "--port", TAKEN_PORT], 1, "is taken"),
    ("serve-foreign-host", [*SEARCHENV, "serve", "--host", "8.8.8.8", "--port", "0"], 2, "--host '8.8.8.8'"),
    ("serve-bad-limit", [*SEARCHENV, "serve", "--top-k", "0", "--port", "0"], 2, "top_k"),
    # python -m agents.train / agents.evaluate
    ("train-unknown-algo", [*PY, "agents.train", "--algo", "dpo"], 2, "invalid choice: 'dpo'"),
    ("train-zero-steps", [*PY, "agents.train", "--steps", "0", "--out", f"{TMP}/s"], 2, "steps must be >= 1"),
    ("evaluate-no-checkpoint", [*PY, "agents.evaluate"], 2, "required: --checkpoint"),
    (
        "evaluate-zero-episodes",
        [*PY, "agents.evaluate", "--checkpoint", TMP, "--episodes", "0"],
        2,
        "--episodes",
    ),
    # python -m benchmarks.leaderboard / experiments / demo
    ("leaderboard-unknown-agent", [*PY, "benchmarks.leaderboard", "--agents", "nosuch"], 2, "'nosuch'"),
    (
        "leaderboard-unknown-task",
        [*PY, "benchmarks.leaderboard", "--agents", "random", "--tasks", "nosuch", "--out", f"{TMP}/lb"],
        2,
        "unknown task 'nosuch'",
    ),
    (
        "leaderboard-unknown-backend",
        [*PY, "benchmarks.leaderboard", "--agents", "random", "--backend", "nosuch", "--out", f"{TMP}/lb"],
        2,
        "unknown backend 'nosuch'",
    ),
    ("experiments-unknown-name", [*PY, "benchmarks.experiments", "nosuch"], 2, "invalid choice: 'nosuch'"),
    ("experiments-zero-jobs", [*PY, "benchmarks.experiments", "passk", "--jobs", "0"], 2, "--jobs"),
    ("demo-zero-questions", [*PY, "benchmarks.demo", "--max-questions", "0"], 2, "--max-questions"),
    ("demo-out-is-a-file", [*PY, "benchmarks.demo", "--out", f"{TMP}/a-file"], 2, "is a file"),
]

# (case id, command, extra environment): the same mistake with the traceback asked for.
DEBUG_CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("debug-flag", [*SEARCHENV, "play", "--task", "nosuch", "--debug"], {}),
    ("debug-env", [*PY, "agents.evaluate", "--checkpoint", "/nonexistent"], {DEBUG_ENV: "1"}),
]


@pytest.fixture(scope="module")
def taken_port() -> Iterator[int]:
    """A port something listens on while the table runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def results(
    taken_port: int, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case's finished process, the table run four at a time."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "a-file").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    jobs = [(name, command, env) for name, command, _, _ in CASES]
    jobs += [(name, command, {**env, **extra}) for name, command, extra in DEBUG_CASES]

    def run(job: tuple[str, list[str], dict[str, str]]) -> subprocess.CompletedProcess[str]:
        _, command, job_env = job
        argv = [arg.format(taken_port=taken_port, tmp=tmp) for arg in command]
        return subprocess.run(
            argv, cwd=REPO, env=job_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([job[0] for job in jobs], pool.map(run, jobs), strict=True))


@pytest.mark.parametrize(
    ("name", "code", "phrase"), [(n, c, p) for n, _, c, p in CASES], ids=[c[0] for c in CASES]
)
def test_a_mistake_is_one_line_and_an_exit_code(
    results: dict[str, subprocess.CompletedProcess[str]], name: str, code: int, phrase: str
) -> None:
    result = results[name]
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0]


@pytest.mark.parametrize("name", [c[0] for c in DEBUG_CASES])
def test_debug_shows_the_traceback(results: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = results[name]
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


def test_serve_announces_the_port_it_bound(tmp_path: Path) -> None:
    command = [*SEARCHENV, "serve", "--task", "synthetic-1k", "--backend", "rank_bm25", "--port", "0"]
    command += ["--cache-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        announced = process.stdout.readline()
        match = re.search(r"on http://127\.0\.0\.1:(\d+) ", announced)
        assert match is not None and match.group(1) != "0", announced
        assert get_health("127.0.0.1", int(match.group(1)), timeout_s=30)["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=30)


# ------------------------------------------------------------------------------ the mechanism


@reports_errors
def _main(argv: Sequence[str] | None = None) -> int:
    """Raise what argv names: inside the input checks (``user_input``) or outside them."""
    kind, where = argv or ["", ""]
    errors: dict[str, Exception] = {
        "value": ValueError("bad value"),
        "key": KeyError("no split 'x'"),
        "missing": FileNotFoundError(2, "No such file or directory", "/nope"),
        "runtime": RuntimeError("a bug"),
        "usage": UsageError("bad option"),
        "failure": CommandError("port taken"),
    }
    if where == "input":
        with user_input():
            raise errors[kind]
    raise errors[kind]


@pytest.mark.parametrize(
    ("kind", "where", "code", "line"),
    [
        ("value", "input", 2, "error: bad value"),
        ("key", "input", 2, "error: no split 'x'"),
        ("missing", "input", 2, "error: /nope: No such file or directory"),
        ("usage", "later", 2, "error: bad option"),
        ("failure", "later", 1, "error: port taken"),
    ],
)
def test_user_mistakes_become_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    where: str,
    code: int,
    line: str,
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert _main([kind, where]) == code
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize(("kind", "where"), [("value", "later"), ("runtime", "input"), ("runtime", "later")])
def test_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, kind: str, where: str) -> None:
    """A ValueError outside the input checks, or any other exception, is a bug: it propagates."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises((ValueError, RuntimeError)):
        _main([kind, where])


def test_debug_env_re_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(UsageError, match="bad value"):
        _main(["value", "input"])


def test_project_errors_keep_their_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from searchenv.retrieval.integrity import IndexCorruptError
    from tasks.dataset import DatasetSpecError

    @reports_errors
    def corrupt(argv: Sequence[str] | None = None) -> int:
        raise IndexCorruptError(Path("/idx"), "bm25s", ["data.npy: sha256 mismatch"])

    @reports_errors
    def bad_spec(argv: Sequence[str] | None = None) -> int:
        with user_input():
            raise DatasetSpecError("spec.json: no such dataset spec file")

    assert corrupt() == 1 and "the bm25s index at /idx is corrupt" in capsys.readouterr().err
    assert bad_spec() == 2 and capsys.readouterr().err == "error: spec.json: no such dataset spec file\n"


def _option_helps(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _option_helps(sub)
        elif action.help and action.help is not argparse.SUPPRESS:
            yield action.dest, formatter._expand_help(action) if action.option_strings else action.help


def test_help_says_each_default_once() -> None:
    from agents.config import build_parser as train_parser
    from agents.evaluate import build_parser as evaluate_parser
    from benchmarks.leaderboard_cli import build_parser as leaderboard_parser
    from searchenv.cli import build_parser as searchenv_parser

    for build in (searchenv_parser, train_parser, evaluate_parser, leaderboard_parser):
        parser = build()
        assert isinstance(parser, ArgumentParser)
        for dest, text in _option_helps(parser):
            assert text.count("(default") <= 1, f"{parser.prog} {dest}: {text}"
    help_text = io.StringIO()
    with redirect_stdout(help_text), pytest.raises(SystemExit):
        searchenv_parser().parse_args(["play", "--help"])
    assert "(default: a random one)" in help_text.getvalue() and "(default: None)" not in help_text.getvalue()
