"""The index cache: one folder per (corpus, backend, parameters, tokenizer), built atomically.

Layout: ``<cache home>/indexes/<backend>-<digest>/`` (``tasks.storage.cache_home``:
``$SEARCHENV_HOME``, else ``$XDG_CACHE_HOME/searchenv``, else ``~/.cache/searchenv``) holding the
backend's files and a ``meta.json`` with the full key, counts and build time. ``<digest>`` is a
short hash of the key.

A build goes into a temp folder next to the target (``tasks.storage.atomic_directory``), writes
``meta.json`` last, then renames the folder into place, so a killed build never leaves a folder
that loads: a folder without a ``meta.json`` matching the expected key is not an index. When two
processes build the same index at once, the first rename wins; the loser discards its copy and
loads the winner's.

Integrity (``searchenv.retrieval.integrity``): ``meta.json`` records the size and sha256 of every
file, and each load verifies them before the backend opens anything. A damaged index raises
:class:`~searchenv.retrieval.integrity.IndexCorruptError` naming the folder and the
``searchenv index build ... --rebuild`` command, or is rebuilt when the caller passes
``on_corrupt="rebuild"``. A folder whose ``meta.json`` is missing, unreadable, for another key or
from before checksums is not an index at all (a killed build): it is rebuilt in place silently.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from searchenv.retrieval.auto import AUTO, BackendChoice, resolve_backend
from searchenv.retrieval.base import Retriever
from searchenv.retrieval.integrity import LOAD_ERRORS, IndexCorruptError, file_checksums, verify_index
from searchenv.retrieval.remote import RemoteRetriever, is_remote_backend
from searchenv.retrieval.tokenize import Tokenizer, default_tokenizer
from tasks.storage import atomic_directory, atomic_write_json, cache_home

_log = logging.getLogger(__name__)

META_FILE = "meta.json"
CACHE_FORMAT = 1

# backend name -> (module, class). Imported on demand: the pyserini module starts a JVM.
BACKENDS: Mapping[str, tuple[str, str]] = {
    "bm25s": ("searchenv.retrieval.bm25s_backend", "BM25sRetriever"),
    "bm25s_pruned": ("searchenv.retrieval.pruned_backend", "PrunedBM25Retriever"),
    "rank_bm25": ("searchenv.retrieval.rank_bm25_backend", "RankBM25Retriever"),
    "pyserini": ("searchenv.retrieval.pyserini_backend", "PyseriniRetriever"),
}
# What a ``--backend`` option accepts: a backend, or ``auto`` (searchenv.retrieval.auto).
BACKEND_CHOICES: tuple[str, ...] = (*BACKENDS, AUTO)


@dataclass(frozen=True)
class LoadInfo:
    """How a retriever came to be: attached to it as ``retriever.load_info``."""

    path: Path
    cached: bool  # True when an existing index was loaded, False when it was built now
    seconds: float  # build (if any) plus load
    meta: Mapping[str, Any]
    choice: BackendChoice | None = None  # set when the backend was "auto": which one, and why


OnCorrupt = Literal["raise", "rebuild"]
Verify = Literal["auto", "full"]


@dataclass(frozen=True)
class IndexStatus:
    """What the cache holds for one key, after a full checksum verification.

    ``state`` is ``"valid"``, ``"corrupt"`` (``problems`` says how), ``"incomplete"`` (a folder
    without a usable ``meta.json``: a killed or pre-checksum build, rebuilt on the next load) or
    ``"missing"``.
    """

    folder: Path
    state: Literal["valid", "corrupt", "incomplete", "missing"]
    meta: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()


# The name ``searchenv.retrieval`` has always exported for the cache root.
searchenv_home = cache_home


def _backend_module(backend: str) -> Any:
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown retrieval backend {backend!r}; choose from {sorted(BACKEND_CHOICES)} or a server URL"
        )
    return importlib.import_module(BACKENDS[backend][0])


def index_key(corpus: Any, backend: str, *, k1: float, b: float, tokenizer: Tokenizer) -> dict[str, Any]:
    """Everything an index depends on. Two builds with equal keys are interchangeable."""
    if not (k1 >= 0 and 0 <= b <= 1):
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1} b={b}")
    return {
        "cache_format": CACHE_FORMAT,
        "backend": backend,
        "backend_format": _backend_module(backend).FORMAT_VERSION,
        "corpus_fingerprint": corpus.fingerprint(),
        "n_docs": len(corpus),
        "k1": float(k1),
        "b": float(b),
        "tokenizer": tokenizer.key,
    }


def key_digest(key: Mapping[str, Any]) -> str:
    """Short stable hash of a key.

    >>> key_digest({"a": 1}) == key_digest({"a": 1}) != key_digest({"a": 2})
    True
    """
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def index_folder(key: Mapping[str, Any], cache_dir: Path | None = None) -> Path:
    """The folder of the index for ``key``: under ``cache_dir``, else ``indexes/`` of the cache home."""
    root = Path(cache_dir) if cache_dir is not None else searchenv_home() / "indexes"
    return root / f"{key['backend']}-{key_digest(key)}"


def read_valid_meta(folder: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The folder's meta if a build for ``key`` completed there (checksums included), else None.

    Whether the files still match the checksums is :func:`verify_index`'s question.
    """
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != dict(key):
        return None
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict) or sorted(checksums) != sorted(meta.get("files", [])):
        return None  # written before checksums existed: not an index this version can trust
    if not all(
        isinstance(entry, dict)
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("sha256"), str)
        for entry in checksums.values()
    ):
        return None
    return meta


def load_retriever(
    corpus: Any,
    backend: str = "bm25s",
    *,
    k1: float = 0.9,
    b: float = 0.4,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    rebuild: bool = False,
    tokenizer: Tokenizer | None = None,
    threads: int = 1,
    on_corrupt: OnCorrupt = "raise",
    verify: Verify = "auto",
    index_path: str | os.PathLike[str] | None = None,
) -> Retriever:
    """A retriever over ``corpus`` (a ``tasks.records.Corpus``), from the cache or built now.

    ``cache_dir`` holds the index folders (default ``$SEARCHENV_HOME/indexes``); ``rebuild``
    forces a fresh build that then replaces the cached one; ``threads`` is used by backends that
    can (bm25s batched search, Anserini indexing). The result carries ``load_info``
    (:class:`LoadInfo`): ``load_info.cached`` tells whether this call built the index.

    A cached index is verified against its checksums first (``verify="auto"`` skips the hashing
    when no file changed since the last full check; ``"full"`` always hashes). A damaged one, or
    one that verifies but fails to open, raises
    :class:`~searchenv.retrieval.integrity.IndexCorruptError` naming the folder and the fix, or
    with ``on_corrupt="rebuild"`` is rebuilt (with a ``RuntimeWarning``).

    A ``backend`` that is a URL (``"http://127.0.0.1:8000"``) gives a
    :class:`~searchenv.retrieval.remote.RemoteRetriever` searching through that server instead:
    nothing is built or cached here, and the other arguments are ignored.

    ``index_path`` (``backend="pyserini"`` only) opens a prebuilt Lucene index folder as it is
    (:mod:`searchenv.retrieval.prebuilt`), as does a corpus read from one (``LuceneCorpus``).
    """
    if is_remote_backend(backend):
        return RemoteRetriever(backend, corpus)
    backend, choice = resolve_backend(backend, len(corpus))
    if choice is not None:
        _log.info("%s", choice)
    if index_path is None and backend == "pyserini":
        index_path = getattr(corpus, "lucene_index_path", None)
    if index_path is not None:
        if backend != "pyserini":
            raise ValueError(f"index_path (prebuilt Lucene) needs backend='pyserini', not {backend!r}")
        from searchenv.retrieval.prebuilt import open_prebuilt

        return open_prebuilt(index_path, corpus, k1=k1, b=b)
    start = time.perf_counter()
    tokenizer = tokenizer or default_tokenizer()
    retriever_class = getattr(_backend_module(backend), BACKENDS[backend][1])
    options: dict[str, Any] = dict(
        k1=k1, b=b, cache_dir=cache_dir, progress=progress, tokenizer=tokenizer, threads=threads
    )
    folder, meta, cached = ensure_index(
        corpus, backend, rebuild=rebuild, on_corrupt=on_corrupt, verify=verify, **options
    )
    try:
        retriever = retriever_class.load(folder, corpus, tokenizer=tokenizer, k1=k1, b=b, threads=threads)
    except FileNotFoundError:
        # A concurrent ``rebuild=True`` swapped the folder out between our check and our load.
        folder, meta, cached = ensure_index(corpus, backend, on_corrupt=on_corrupt, **options)
        retriever = retriever_class.load(folder, corpus, tokenizer=tokenizer, k1=k1, b=b, threads=threads)
    except LOAD_ERRORS as error:
        corrupt = IndexCorruptError(folder, backend, [f"it fails to open: {type(error).__name__}: {error}"])
        if on_corrupt != "rebuild":
            raise corrupt from error
        warnings.warn(f"{corrupt}; rebuilding it", RuntimeWarning, stacklevel=2)
        folder, meta, cached = ensure_index(corpus, backend, rebuild=True, **options)
        retriever = retriever_class.load(folder, corpus, tokenizer=tokenizer, k1=k1, b=b, threads=threads)
    retriever.load_info = LoadInfo(folder, cached, time.perf_counter() - start, meta, choice)
    return retriever


def ensure_index(
    corpus: Any,
    backend: str = "bm25s",
    *,
    k1: float = 0.9,
    b: float = 0.4,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    rebuild: bool = False,
    tokenizer: Tokenizer | None = None,
    threads: int = 1,
    on_corrupt: OnCorrupt = "raise",
    verify: Verify = "auto",
) -> tuple[Path, dict[str, Any], bool]:
    """Make sure a valid index exists, without opening it: ``(folder, meta, was_cached)``.

    A cached index is verified as in :func:`load_retriever`; ``on_corrupt`` and ``verify`` mean
    the same here.
    """
    tokenizer = tokenizer or default_tokenizer()
    backend, _ = resolve_backend(backend, len(corpus))
    key = index_key(corpus, backend, k1=k1, b=b, tokenizer=tokenizer)
    folder = index_folder(key, Path(cache_dir) if cache_dir is not None else None)
    if not rebuild:
        meta = read_valid_meta(folder, key)
        problems = [] if meta is None else verify_index(folder, meta, full=verify == "full")
        if meta is not None and problems and read_valid_meta(folder, key) != meta:
            # Another process rebuilt the folder while we hashed the old files: check the new one.
            meta = read_valid_meta(folder, key)
            problems = [] if meta is None else verify_index(folder, meta, full=verify == "full")
        if meta is not None and not problems:
            return folder, meta, True
        if meta is not None:
            corrupt = IndexCorruptError(folder, backend, problems)
            if on_corrupt != "rebuild":
                raise corrupt
            warnings.warn(f"{corrupt}; rebuilding it", RuntimeWarning, stacklevel=2)
            rebuild = True  # the corrupt folder has a valid meta, so it must be replaced explicitly
    retriever_class = getattr(_backend_module(backend), BACKENDS[backend][1])
    meta = _build(corpus, folder, key, retriever_class, tokenizer, progress, threads, replace=rebuild)
    return folder, meta, False


def index_status(
    corpus: Any,
    backend: str = "bm25s",
    *,
    k1: float = 0.9,
    b: float = 0.4,
    cache_dir: str | os.PathLike[str] | None = None,
    tokenizer: Tokenizer | None = None,
) -> IndexStatus:
    """What the cache holds for these settings, every file hashed; builds and changes nothing."""
    backend, _ = resolve_backend(backend, len(corpus))
    key = index_key(corpus, backend, k1=k1, b=b, tokenizer=tokenizer or default_tokenizer())
    folder = index_folder(key, Path(cache_dir) if cache_dir is not None else None)
    if not folder.exists():
        return IndexStatus(folder, "missing")
    meta = read_valid_meta(folder, key)
    if meta is None:
        return IndexStatus(folder, "incomplete")
    problems = tuple(verify_index(folder, meta, full=True))
    return IndexStatus(folder, "corrupt" if problems else "valid", meta, problems)


def index_info(
    corpus: Any,
    backend: str = "bm25s",
    *,
    k1: float = 0.9,
    b: float = 0.4,
    cache_dir: str | os.PathLike[str] | None = None,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any] | None:
    """The ``meta.json`` of the cached index (plus its path) if it is valid, else None.

    :func:`index_status` tells a missing index from a damaged one.
    """
    status = index_status(corpus, backend, k1=k1, b=b, cache_dir=cache_dir, tokenizer=tokenizer)
    return None if status.state != "valid" else {**(status.meta or {}), "path": str(status.folder)}


def _build(
    corpus: Any,
    folder: Path,
    key: Mapping[str, Any],
    retriever_class: Any,
    tokenizer: Tokenizer,
    progress: bool,
    threads: int,
    *,
    replace: bool,
) -> dict[str, Any]:
    """Build into a temp folder, then rename it to ``folder``; returns the winning meta.

    ``replace`` (a rebuild) swaps out an existing index; otherwise only an invalid leftover is
    replaced, and a valid index that another process finished first is kept instead of ours.
    """
    with atomic_directory(
        folder, replace=True if replace else (lambda existing: read_valid_meta(existing, key) is None)
    ) as temp:
        start = time.perf_counter()
        counts = retriever_class.build(
            corpus, temp, tokenizer=tokenizer, k1=key["k1"], b=key["b"], progress=progress, threads=threads
        )
        files = sorted(str(p.relative_to(temp)) for p in temp.rglob("*") if p.is_file())
        meta = {
            "key": dict(key),
            "digest": key_digest(key),
            "counts": counts,
            "files": files,
            "checksums": file_checksums(temp, files),
            "build_seconds": round(time.perf_counter() - start, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(temp / META_FILE, meta)  # last: its presence marks a complete build
    winner = read_valid_meta(folder, key)  # ours, or the one another process finished first
    if winner is None:
        raise RuntimeError(f"index build for {folder} finished but left no valid index there")
    return winner
