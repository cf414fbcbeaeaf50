"""Index integrity: checksums verified at load, corrupt indexes named with their fix, safe cache formats.

Every backend that stores files is damaged two ways: a file cut short (a ``.npy``, a json file,
Lucene's own files) and a file damaged in place at the same size, which used to load and answer
with wrong hits.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import warnings
from pathlib import Path

import pytest

from searchenv.retrieval import IndexCorruptError, index_info, index_status, integrity, load_retriever
from searchenv.retrieval.cache import META_FILE
from searchenv.retrieval.rank_bm25_backend import RankBM25Retriever, load_corpus_terms
from searchenv.retrieval.tokenize import default_tokenizer, tokenize_corpus
from tasks.records import Corpus, Passage

REPO = Path(__file__).resolve().parents[1]
QUERIES = ["capital of Norway", "glaciers and ice", "largest city", "krone currency"]

# backend -> {kind of file: a function picking that file in the index folder}
TRUNCATED = {
    "bm25s": {"npy": "data.csc.index.npy", "json": "vocab.index.json"},
    "rank_bm25": {"npy": "term_ids.npy", "json": "vocab.json"},
    "pyserini": {"json": "doc_order.json", "lucene": "lucene/*"},
}
CASES = [(backend, kind) for backend, kinds in TRUNCATED.items() for kind in kinds]


def corpus() -> Corpus:
    passages = [
        Passage("d01", "Norway", "Oslo is the capital of Norway. The currency is the Norwegian krone."),
        Passage("d02", "Sweden", "Stockholm is the capital of Sweden and its largest city."),
        Passage("d03", "Chad", "N'Djamena is the capital of Chad, on the Chari river."),
        Passage("d04", "Weather", "It rained all day in the mountains near the river."),
    ]
    passages += [Passage(f"t{i:02d}", "Ice", f"Glaciers and ice number {i} in the north.") for i in range(40)]
    return Corpus(passages)


def pick(folder: Path, pattern: str) -> Path:
    """The named file, or the largest file matching a glob (Lucene's names vary)."""
    return max(folder.glob(pattern), key=lambda p: p.stat().st_size)


def damage_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 32, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def hits(retriever) -> list:
    return [retriever.search(query, 5) for query in QUERIES]


@pytest.mark.parametrize(("backend", "kind"), CASES)
def test_truncated_file_names_the_folder_and_the_fix_then_rebuilds(
    tmp_path: Path, backend: str, kind: str
) -> None:
    first = load_retriever(corpus(), backend, cache_dir=tmp_path)
    expected, folder = hits(first), first.load_info.path
    victim = pick(folder, TRUNCATED[backend][kind])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])

    with pytest.raises(IndexCorruptError) as caught:
        load_retriever(corpus(), backend, cache_dir=tmp_path)
    message = str(caught.value)
    assert str(folder) in message and "--rebuild" in message and f"--backend {backend}" in message
    assert victim.name in message and "truncated" in message
    assert index_info(corpus(), backend, cache_dir=tmp_path) is None
    assert index_status(corpus(), backend, cache_dir=tmp_path).state == "corrupt"

    with pytest.warns(RuntimeWarning, match="corrupt"):
        repaired = load_retriever(corpus(), backend, cache_dir=tmp_path, on_corrupt="rebuild")
    assert not repaired.load_info.cached and hits(repaired) == expected
    assert load_retriever(corpus(), backend, cache_dir=tmp_path).load_info.cached


@pytest.mark.parametrize("backend", sorted(TRUNCATED))
def test_same_size_damage_is_caught_not_answered(tmp_path: Path, backend: str) -> None:
    folder = load_retriever(corpus(), backend, cache_dir=tmp_path).load_info.path
    victim = pick(folder, "lucene/*" if backend == "pyserini" else "*.npy")
    size = victim.stat().st_size
    damage_in_place(victim)
    assert victim.stat().st_size == size
    with pytest.raises(IndexCorruptError, match="damaged in place"):
        load_retriever(corpus(), backend, cache_dir=tmp_path)


def test_unchanged_index_skips_hashing_and_any_later_write_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Path] = []
    original = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: hashed.append(path) or original(path))

    folder = load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path).load_info.path
    assert not (folder / integrity.STAMP_FILE).exists()  # files just written: too fresh to stamp
    monkeypatch.setattr(integrity, "RACY_SECONDS", -60.0)  # as if they were written a minute ago
    load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path)
    assert (folder / integrity.STAMP_FILE).exists()
    hashed.clear()
    assert load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path).load_info.cached
    assert hashed == []  # stats unchanged since the last full check: no hashing

    # Damage in place and put the old mtime back: the ctime still moves, so the stamp no longer holds.
    victim = folder / "term_ids.npy"
    old = victim.stat()
    time.sleep(0.05)
    damage_in_place(victim)
    os.utime(victim, ns=(old.st_atime_ns, old.st_mtime_ns))
    with pytest.raises(IndexCorruptError, match=r"term_ids\.npy does not match"):
        load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path)
    (folder / integrity.STAMP_FILE).write_text("{garbage")  # a damaged stamp only means: hash again
    with pytest.raises(IndexCorruptError):
        load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path)


def test_missing_file_and_unopenable_index_are_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path).load_info.path
    (folder / "offsets.npy").unlink()
    with pytest.raises(IndexCorruptError, match=r"offsets\.npy is missing"):
        load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path)
    load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path, rebuild=True)

    # Files as built, yet the backend cannot open them (a library upgrade, say): same error, same fix.
    def broken_load(*args, **kwargs):
        raise ValueError("unexpected array layout")

    monkeypatch.setattr(RankBM25Retriever, "load", classmethod(broken_load))
    with pytest.raises(IndexCorruptError, match="fails to open: ValueError: unexpected array layout"):
        load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path)


def test_meta_from_before_checksums_is_rebuilt_quietly(tmp_path: Path) -> None:
    folder = load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path).load_info.path
    meta = json.loads((folder / META_FILE).read_text())
    del meta["checksums"]
    (folder / META_FILE).write_text(json.dumps(meta))
    assert index_status(corpus(), "rank_bm25", cache_dir=tmp_path).state == "incomplete"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load_retriever(corpus(), "rank_bm25", cache_dir=tmp_path).load_info.cached
    assert "checksums" in json.loads((folder / META_FILE).read_text())


def test_index_cli_reports_corruption_and_build_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from searchenv.index_cli import main

    common = ["--task", "synthetic-1k", "--backend", "rank_bm25", "--cache-dir", str(tmp_path)]
    assert main(["build", *common, "--no-progress"]) == 0
    folder = Path(json.loads(capsys.readouterr().out)["path"])
    assert main(["info", *common]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "valid"

    damage_in_place(folder / "term_ids.npy")
    assert main(["info", *common]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["state"] == "corrupt" and str(folder) in err
    assert "searchenv index build --task synthetic-1k --backend rank_bm25 --rebuild" in err

    assert main(["build", *common, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "found cached" not in err and "corrupt" in err and re.search(r"^rebuilt ", err, re.M)
    assert main(["build", *common, "--no-progress"]) == 0
    assert "found cached (checksums verified)" in capsys.readouterr().err
    assert main(["info", *common]) == 0


# ------------------------------------------------------------------------------ safe loads


def test_rank_bm25_cache_is_not_a_pickle_and_gives_the_same_terms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pickle(*args, **kwargs):
        raise AssertionError("a cache file was unpickled")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    odd = Corpus([*corpus().passages(), Passage("z", "Odd", "naïve café ü 東京")])
    retriever = load_retriever(odd, "rank_bm25", cache_dir=tmp_path)
    folder = retriever.load_info.path
    assert not [p for p in folder.iterdir() if p.suffix in {".pkl", ".pickle"}]
    assert load_corpus_terms(folder) == list(tokenize_corpus(odd.passages(), default_tokenizer()))
    reference = load_retriever(odd, "bm25s", cache_dir=tmp_path)
    for query in [*QUERIES, "café 東京"]:
        assert [h.doc_id for h in retriever.search(query, 5)] == [
            h.doc_id for h in reference.search(query, 5)
        ]


def test_no_unsafe_loads_in_the_code() -> None:
    unsafe = re.compile(
        r"pickle\.loads?\(|allow_pickle=True|weights_only=False|torch\.load\((?![^)]*weights_only=True)"
    )
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for package in ("searchenv", "agents", "benchmarks", "tasks")
        for path in (REPO / package).rglob("*.py")
        if "results" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []
