"""Index integrity: sha256 checksums written at build time and verified before an index is used.

The build records ``{"size", "sha256"}`` of every index file in ``meta.json`` (under
``checksums``). A load verifies them: a truncated file shows as a size mismatch, a file damaged
in place as a hash mismatch, so a damaged index never answers with wrong hits.

Hashing every file on every load would add about 40% to a warm load (sha256 runs at ~570 MB/s
here; a 100k-passage bm25s index is 38 MB), so a full check records a *stamp*,
``verified.json``: each file's size, mtime, ctime and inode at the time it hashed clean. A later
load whose files all still have those exact stats skips the hashing. Any write to a file through
the file system changes its ctime, which no one can set back, so a stamp cannot hide a change
made after it was taken. Like git's "racily clean" index entries, files changed less than
:data:`RACY_SECONDS` before a check get no stamp (a change within the same clock tick would keep
their stats), and a folder that cannot be written to (a shared, read-only cache) is hashed in
full on every load. ``verify="full"`` (``searchenv index info``, ``index build``) always hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.storage import atomic_write_json

STAMP_FILE = "verified.json"
RACY_SECONDS = 2.0
_CHUNK = 1 << 20

# What can go wrong when an index passes verification and still fails to open: the backends'
# own checks (ValueError), numpy/json parse errors (ValueError, EOFError), or a file system error.
LOAD_ERRORS: tuple[type[BaseException], ...] = (ValueError, EOFError, KeyError, IndexError, OSError)


class IndexCorruptError(RuntimeError):
    """A cached index whose files do not match its ``meta.json`` or cannot be opened.

    Attributes:
        folder: The index folder.
        backend: The backend that built it.
        problems: One line per damaged file (or the load error).
        summary: What is wrong, without the fix.
    """

    def __init__(self, folder: Path, backend: str, problems: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.backend = backend
        self.problems = list(problems)
        self.summary = f"the {backend} index at {self.folder} is corrupt: {'; '.join(self.problems)}"
        super().__init__(f"{self.summary}. {self.fix()}")

    def fix(self, task: str = "<task>") -> str:
        """The sentence that says how to repair the index.

        Args:
            task: The task name to put in the command.

        Returns:
            The command to run, and the Python and manual alternatives.
        """
        return (
            f"Rebuild it: searchenv index build --task {task} --backend {self.backend} --rebuild "
            f'(in Python: load_retriever(..., rebuild=True) or on_corrupt="rebuild"), '
            f"or delete {self.folder}"
        )


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks.

    Args:
        path: The file.

    Returns:
        Its hex digest.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def file_checksums(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of each named file under ``folder``, for ``meta.json``.

    Args:
        folder: The index folder.
        names: File paths relative to it.

    Returns:
        ``{name: {"size": bytes, "sha256": hex}}``.
    """
    return {
        name: {"size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)} for name in names
    }


def verify_index(folder: Path, meta: Mapping[str, Any], *, full: bool = False) -> list[str]:
    """Check an index folder's files against the checksums in its meta.

    Args:
        folder: The index folder.
        meta: Its parsed ``meta.json`` (with ``checksums``).
        full: Hash every file even when the stamp says nothing changed.

    Returns:
        One line per problem; empty when the index is intact.
    """
    checksums: Mapping[str, Mapping[str, Any]] = meta["checksums"]
    before = _stats(folder, checksums)
    if not full and before is not None and _read_stamp(folder, checksums) == before:
        return []
    problems = []
    for name, expected in sorted(checksums.items()):
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if size != expected["size"]:
            problems.append(
                f"{name} is {size} bytes, meta.json says {expected['size']} (truncated or replaced)"
            )
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{name} does not match its sha256 in meta.json (same size: damaged in place)")
    if not problems and before is not None and _stats(folder, checksums) == before:
        _write_stamp(folder, checksums, before)
    return problems


def _stats(folder: Path, checksums: Mapping[str, Any]) -> dict[str, list[int]] | None:
    try:
        stats = {name: (folder / name).stat() for name in checksums}
    except OSError:
        return None
    return {name: [s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino] for name, s in stats.items()}


def _checksums_digest(checksums: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


def _read_stamp(folder: Path, checksums: Mapping[str, Any]) -> dict[str, list[int]] | None:
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
        if stamp["checksums_sha256"] == _checksums_digest(checksums):
            return dict(stamp["files"])
    except (OSError, ValueError, TypeError, KeyError):
        pass  # no stamp, or a damaged one: hash in full
    return None


def _write_stamp(folder: Path, checksums: Mapping[str, Any], stats: Mapping[str, list[int]]) -> None:
    # Stats from the same clock tick as a later write could match it: wait until they are old.
    racy_after = time.time_ns() - int(RACY_SECONDS * 1e9)
    if any(max(mtime, ctime) >= racy_after for _, mtime, ctime, _ in stats.values()):
        return
    # A read-only cache (or a folder swapped out by a rebuild) just stays unstamped.
    with contextlib.suppress(OSError):
        atomic_write_json(
            folder / STAMP_FILE, {"checksums_sha256": _checksums_digest(checksums), "files": dict(stats)}
        )
