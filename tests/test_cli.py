"""The terminal CLI: a person plays an episode; indexes are built and inspected."""

from __future__ import annotations

import json
import subprocess
import sys

from searchenv.cli import _to_action
from searchenv.resources import shared_task


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "searchenv.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_play_an_episode_in_the_terminal() -> None:
    question = next(q for q in shared_task("factbook").questions("test") if q.kind == "capital")
    typed = f"s {question.question}\nnot an action\na {question.answers[0]}\n"
    result = _cli("play", "--question-id", question.qid, stdin=typed)
    assert result.returncode == 0, result.stderr
    assert question.question in result.stdout
    assert "<information>" in result.stdout and "<error>" in result.stdout
    assert "Episode over (answered)" in result.stdout and "Correct: True" in result.stdout


def test_play_ends_cleanly_when_input_ends() -> None:
    result = _cli("play", "--seed", "1", stdin="s capital\n")
    assert result.returncode == 1 and "Game abandoned" in result.stdout


def test_shorthands() -> None:
    assert _to_action("r fr/government/000") == "<read>fr/government/000</read>"
    assert _to_action("s") == "s"


def test_index_build_then_info() -> None:
    built = _cli("index", "build", "--task", "factbook", "--backend", "bm25s")
    assert built.returncode == 0, built.stderr
    info = _cli("index", "info", "--task", "factbook", "--backend", "bm25s")
    assert info.returncode == 0, info.stderr
    meta = json.loads(info.stdout)
    assert meta["counts"]["n_docs"] == len(shared_task("factbook").corpus)
