"""tasks.storage: atomic file writes, atomic folder builds, fsync of trees and the cache home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasks
import tasks.records
from tasks import storage
from tasks.storage import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_lines,
    atomic_write_text,
    cache_home,
    fsync_tree,
)

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------ files
def test_writers_round_trip_and_create_folders(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\xff")
    atomic_write_text(tmp_path / "t.txt", "Straße\nno newline added")
    atomic_write_json(tmp_path / "v.json", {"b": 1, "a": [1, 2]})
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": 2}, indent=None, sort_keys=False)
    atomic_write_lines(tmp_path / "l.jsonl", (json.dumps({"i": i}) for i in range(3)))
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "t.txt").read_bytes() == "Straße\nno newline added".encode()
    assert (tmp_path / "v.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert (tmp_path / "c.json").read_text() == '{"b": 1, "a": 2}\n'
    assert (tmp_path / "l.jsonl").read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'
    atomic_write_lines(tmp_path / "empty.txt", [])
    assert (tmp_path / "empty.txt").read_bytes() == b""
    assert _names(tmp_path) == ["a", "c.json", "empty.txt", "l.jsonl", "t.txt", "v.json"]


def test_atomic_write_lines_keeps_the_records_format_and_import(tmp_path: Path) -> None:
    # The format of tasks.records.atomic_write_lines before it moved here: utf-8, "\n" after each.
    atomic_write_lines(tmp_path / "x.txt", ["é", "", "two words"])
    assert (tmp_path / "x.txt").read_bytes() == "é\n\ntwo words\n".encode()
    assert tasks.records.atomic_write_lines is atomic_write_lines is tasks.atomic_write_lines


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_failure_mid_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "data.jsonl"
    atomic_write_lines(target, ["old"])

    def lines() -> Iterator[str]:
        yield "new 1"
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        atomic_write_lines(target, lines())
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not serializable": object()})
    assert target.read_text() == "old\n"
    assert _names(tmp_path) == ["data.jsonl"]  # temp files went with the failures


def test_failed_rename_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.txt"
    atomic_write_text(target, "old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(storage.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and _names(tmp_path) == ["data.txt"]


def test_killed_writer_leaves_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "data.jsonl"
    atomic_write_lines(target, ["old"])
    code = (
        "import os, signal, sys\n"
        "from tasks.storage import atomic_write_lines\n"
        "def lines():\n"
        "    yield 'x' * 100_000\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write_lines(sys.argv[1], lines())\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, check=False)
    assert result.returncode == -signal.SIGKILL
    assert target.read_text() == "old\n"
    # A kill cannot clean up: what is left is a hidden temp file, never the target half-written.
    leftovers = [name for name in _names(tmp_path) if name != "data.jsonl"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".data.jsonl.") and leftovers[0].endswith(".tmp")


def test_fsync_tree_flushes_every_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for path in (tmp_path / "a", tmp_path / "sub" / "b", tmp_path / "sub" / "deeper" / "c"):
        path.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")  # links are not part of the tree
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", recording_fsync)
    fsync_tree(tmp_path)
    expected = {str(p) for p in tmp_path.rglob("*") if not p.is_symlink()} | {str(tmp_path)}
    assert set(synced) == expected and len(synced) == len(expected)
    assert synced[-1] == str(tmp_path)  # the root last, after everything in it
    assert synced.index(str(tmp_path / "sub" / "b")) < synced.index(str(tmp_path / "sub"))


# ---------------------------------------------------------------------------------- folders
def test_atomic_directory_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "index"
    with atomic_directory(final) as temp:
        assert temp.parent == final.parent and temp.name.startswith(f".tmp-index-{os.getpid()}-")
        assert not final.exists()  # nothing is visible before the block succeeds
        (temp / "nested").mkdir()
        (temp / "nested" / "data").write_text("built")
    assert (final / "nested" / "data").read_text() == "built"
    assert _names(final.parent) == ["index"]


def test_atomic_directory_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as temp:
        (temp / "half").write_text("written")
        raise KeyboardInterrupt
    assert _names(tmp_path) == []

    with atomic_directory(final, replace=True) as temp:
        (temp / "v").write_text("1")
    with pytest.raises(ValueError), atomic_directory(final, replace=True) as temp:
        raise ValueError("a failed rebuild")
    assert (final / "v").read_text() == "1" and _names(tmp_path) == ["index"]


def test_atomic_directory_keeps_or_replaces_an_existing_folder(tmp_path: Path) -> None:
    final = tmp_path / "index"
    final.mkdir()
    (final / "v").write_text("first")
    with atomic_directory(final) as temp:  # first build wins by default
        (temp / "v").write_text("second")
    assert (final / "v").read_text() == "first" and _names(tmp_path) == ["index"]

    with atomic_directory(final, replace=True) as temp:
        (temp / "v").write_text("third")
    assert (final / "v").read_text() == "third" and _names(tmp_path) == ["index"]

    seen: list[Path] = []

    def is_invalid(existing: Path) -> bool:
        seen.append(existing)
        return (existing / "v").read_text() != "third"

    with atomic_directory(final, replace=is_invalid) as temp:
        (temp / "v").write_text("fourth")
    assert seen == [final] and (final / "v").read_text() == "third"
    (final / "v").write_text("corrupt")
    with atomic_directory(final, replace=is_invalid) as temp:
        (temp / "v").write_text("fifth")
    assert (final / "v").read_text() == "fifth" and _names(tmp_path) == ["index"]


def test_atomic_directory_removes_only_dead_leftovers(tmp_path: Path) -> None:
    dead, ours = _dead_pid(), os.getpid()
    for name in (
        f".tmp-index-{dead}-abcd",
        f".trash-index-{dead}-abcd",
        f".tmp-index-{ours}-abcd",  # maybe another thread of ours, building right now
        f".tmp-other-{dead}-abcd",  # another folder's business
        f".tmp-index-2-{dead}-abcd",  # "index-2"'s, not "index"'s
        ".tmp-index-notes",  # not a name atomic_directory makes
    ):
        (tmp_path / name).mkdir()
    with atomic_directory(tmp_path / "index"):
        pass
    kept = [
        f".tmp-index-2-{dead}-abcd",
        f".tmp-index-{ours}-abcd",
        ".tmp-index-notes",
        f".tmp-other-{dead}-abcd",
    ]
    assert _names(tmp_path) == sorted([*kept, "index"])


def test_atomic_directory_loses_a_race_gracefully(tmp_path: Path) -> None:
    final = tmp_path / "index"
    with atomic_directory(final) as temp:
        (temp / "v").write_text("ours")
        with atomic_directory(final) as rival:  # another builder finishes first
            (rival / "v").write_text("theirs")
    assert (final / "v").read_text() == "theirs" and _names(tmp_path) == ["index"]


# ------------------------------------------------------------------------------- cache home
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SEARCHENV_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_cache_home_defaults_to_the_user_cache(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_home() == tmp_path / "home" / ".cache" / "searchenv"
    assert (
        cache_home("indexes", "bm25s-1") == tmp_path / "home" / ".cache" / "searchenv" / "indexes" / "bm25s-1"
    )
    clean_env.setenv("SEARCHENV_HOME", "")  # empty means unset
    clean_env.setenv("XDG_CACHE_HOME", "")
    assert cache_home("models") == tmp_path / "home" / ".cache" / "searchenv" / "models"
    assert not (tmp_path / "home").exists()  # resolving creates nothing


def test_cache_home_honours_xdg_cache_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home("models") == tmp_path / "xdg" / "searchenv" / "models"


def test_searchenv_home_wins_and_expands_the_user(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("SEARCHENV_HOME", str(tmp_path / "mine"))
    assert cache_home() == tmp_path / "mine" and cache_home("indexes") == tmp_path / "mine" / "indexes"
    clean_env.setenv("SEARCHENV_HOME", "~/shared")
    assert cache_home("models") == tmp_path / "home" / "shared" / "models"


def test_every_cache_resolves_through_cache_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agents.lm.models import models_home
    from searchenv.retrieval import searchenv_home

    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert searchenv_home() == cache_home() == tmp_path / "xdg" / "searchenv"
    assert models_home() == cache_home("models") and models_home(tmp_path / "x") == tmp_path / "x"
