"""Crash-safe files and folders, and the cache home, for every layer of SearchQA.

Every file is written to a temp file in its own folder, flushed and fsynced, renamed over the
target (atomic on POSIX) and the folder fsynced, so a reader sees the old content or the new,
never a torn file. Folders (indexes, model conversions, checkpoints) are built in a hidden temp
folder next to their final place and renamed into it by :func:`atomic_directory`. Files and
folders are created with the usual permissions (``0o666`` / ``0o777`` less the umask), not the
owner-only ones ``tempfile`` gives, because results and caches are meant to be shared.

This lives in ``tasks``, the bottom layer, so that ``searchenv``, ``agents`` and
``benchmarks`` can all use it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

PathLike = str | os.PathLike[str]

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# What follows "<prefix><name>-" in a temp or trash folder's name: "<pid>-<random hex>". Matching
# it whole keeps "index" from claiming the leftovers of "index-2".
_OWNER = re.compile(r"(\d+)-[0-9a-f]+")


# ------------------------------------------------------------------------------------ files
def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (a rename inside it, a new file) to disk.

    Some file systems cannot fsync a folder; the data is then as durable as they allow, which
    is no reason to fail a write that has already happened.

    Args:
        folder: The folder.
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_temp_beside(target: Path) -> tuple[BinaryIO, Path]:
    # O_EXCL with mode 0o666 honours the umask, unlike mkstemp's 0o600.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.fdopen(os.open(temp, flags, 0o666), "wb"), temp
        except FileExistsError:
            continue


def _atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = _open_temp_beside(target)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` atomically, creating its folder if needed.

    Args:
        path: The target file.
        data: Its new content.
    """
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: PathLike, text: str) -> None:
    """Replace the file at ``path`` with ``text`` encoded as UTF-8, atomically.

    Args:
        path: The target file.
        text: Its new content, written as is (no newline is added).
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, value: Any, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Replace the file at ``path`` with ``value`` as JSON plus a final newline, atomically.

    Args:
        path: The target file.
        value: Anything ``json.dumps`` accepts.
        indent: Passed to ``json.dumps``.
        sort_keys: Passed to ``json.dumps``.
    """
    atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")


def atomic_write_lines(path: PathLike, lines: Iterable[str]) -> None:
    r"""Replace the file at ``path`` with ``lines``, each followed by ``"\n"``, atomically.

    The lines are streamed, so a corpus can be written without being held twice in memory.

    Args:
        path: The target file (JSONL, usually).
        lines: Text lines without their newline.
    """

    def write(handle: BinaryIO) -> None:
        # A text layer encodes in large chunks, far faster than encoding line by line.
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n")
        try:
            for line in lines:
                text.write(line)
                text.write("\n")
        finally:
            text.detach()  # flushes into ``handle``, which stays open for the fsync

    _atomic_write(path, write)


def fsync_tree(root: PathLike) -> None:
    """Flush every file and folder under ``root`` (files first, then their folders, ``root`` last).

    Symbolic links are not followed: what they point to is not part of the tree.

    Args:
        root: The folder.
    """
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


# ---------------------------------------------------------------------------------- folders
def _discard(folder: Path) -> None:
    # Rename first, so the folder vanishes at once for readers, then delete at leisure.
    trash = folder.parent / f"{TRASH_PREFIX}{folder.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be building right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_folders(final: PathLike) -> int:
    """Delete the temp and trash folders of ``final`` left by processes that no longer run.

    Only names :func:`atomic_directory` makes are touched: ``.tmp-<name>-<pid>-<hex>`` and
    ``.trash-<name>-<pid>-<hex>``.

    Args:
        final: A folder that :func:`atomic_directory` builds.

    Returns:
        How many leftovers were deleted.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return 0
    removed = 0
    for leftover in final.parent.iterdir():
        for prefix in (TEMP_PREFIX, TRASH_PREFIX):
            head = f"{prefix}{final.name}-"
            owner = _OWNER.fullmatch(leftover.name[len(head) :]) if leftover.name.startswith(head) else None
            if owner and not _process_alive(int(owner[1])):
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_directory(final: PathLike, *, replace: bool | Callable[[Path], bool] = False) -> Iterator[Path]:
    """Build a folder in a temp folder beside ``final``, then rename it into place.

    The temp folder is ``.tmp-<name>-<pid>-<random>``; leftovers of killed processes are
    deleted on entry. When the block raises, the temp folder is deleted and nothing else
    changes. When it succeeds, the tree is fsynced and renamed to ``final``, unless ``final``
    exists and is to be kept: then the new folder is discarded (the first build wins) and the
    caller finds the existing one at ``final``. An existing ``final`` that is replaced is moved
    aside atomically before the rename and deleted after.

    Args:
        final: Where the folder goes.
        replace: Whether an existing ``final`` is replaced: a bool, or a predicate called with
            ``final`` when the block has succeeded (e.g. "is it not a valid index?").

    Yields:
        The temp folder to fill.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_directory(root / "index") as temp:
    ...     _ = (temp / "data.txt").write_text("x")
    >>> sorted(p.name for p in root.iterdir()), (root / "index" / "data.txt").read_text()
    (['index'], 'x')
    >>> shutil.rmtree(root)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_folders(final)
    temp = final.parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}-{secrets.token_hex(4)}"
    temp.mkdir()
    try:
        yield temp
        fsync_tree(temp)
        if final.exists() and (replace(final) if callable(replace) else replace):
            _discard(final)
        if not final.exists():
            try:
                os.rename(temp, final)
            except OSError:
                # Another process's folder landed between our check and our rename: it wins.
                if not final.exists():
                    raise
            fsync_dir(final.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------------------- cache home
def cache_home(*parts: str) -> Path:
    """The folder SearchQA caches indexes and models in, joined with ``parts``.

    ``$SEARCHENV_HOME`` if set, else ``$XDG_CACHE_HOME/searchenv`` if that is set, else
    ``~/.cache/searchenv``. Nothing is created.

    Args:
        *parts: Sub-folders, e.g. ``"indexes"``.

    Returns:
        The path.

    >>> cache_home("indexes") == cache_home() / "indexes"
    True
    """
    configured = os.environ.get("SEARCHENV_HOME")
    if configured:
        root = Path(configured).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "searchenv"
    else:
        root = Path.home() / ".cache" / "searchenv"
    return root.joinpath(*parts)


__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_lines",
    "atomic_write_text",
    "cache_home",
    "fsync_dir",
    "fsync_tree",
    "remove_stale_temp_folders",
]
