"""bm25s_pruned: block-max MaxScore over bm25s's index gives bm25s's hits exactly; cache and auto.

Equality is strict: the same doc ids in the same order with bit-identical float32 scores, on the
Factbook, on a synthetic corpus (planted questions and random bags of words, with repeated
terms) and on corpora built for ties: passages repeated far past the first fetch, so the
k-th place is shared by more passages than the search first asks for (ties broken by doc id,
ascending, as everywhere). Timing is not asserted here: ``benchmarks/bench_scale.py`` measures it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from searchenv.retrieval import IndexCorruptError, index_info, index_status, load_retriever
from searchenv.retrieval.auto import PRUNED_FROM_PASSAGES, choose_backend
from searchenv.retrieval.block_max import BLOCK, BLOCK_FILES, compute_block_max
from searchenv.retrieval.pruned_backend import PrunedBM25Retriever
from tasks.records import Corpus, Passage
from tasks.synthetic import synthetic_task

KS = (1, 3, 10, 25)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pruned-cache")


def both(corpus: Corpus, cache_root: Path, threads: int = 1) -> tuple[object, object]:
    dense = load_retriever(corpus, "bm25s", cache_dir=cache_root, threads=threads)
    pruned = load_retriever(corpus, "bm25s_pruned", cache_dir=cache_root, threads=threads)
    return dense, pruned


def assert_same_hits(dense, pruned, queries: list[str]) -> None:
    for k in KS:
        expected, got = dense.search_batch(queries, k), pruned.search_batch(queries, k)
        for query, want, have in zip(queries, expected, got, strict=True):
            assert have == want, f"k={k} query={query!r}"


def random_queries(corpus: Corpus, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [w for p in list(corpus.passages())[:400] for w in (p.title + " " + p.text).split()]
    queries = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(n)]
    return queries + [f"{q} {q.split()[0]}" for q in queries[:50]]  # a repeated term counts twice


def test_factbook_hits_equal_bm25s(cache_root: Path) -> None:
    from tasks import load_task

    task = load_task("factbook")
    dense, pruned = both(task.corpus, cache_root)
    questions = [q.question for split in task.splits.values() for q in split]
    assert_same_hits(dense, pruned, questions[::4] + random_queries(task.corpus, 200, seed=3))


def test_synthetic_hits_equal_bm25s_serial_and_threaded(cache_root: Path) -> None:
    task = synthetic_task(6_000, seed=11, n_questions=200)
    queries = [q.question for split in task.splits.values() for q in split]
    queries += random_queries(task.corpus, 250, seed=5)
    dense, pruned = both(task.corpus, cache_root)
    assert isinstance(pruned, PrunedBM25Retriever) and pruned.backend == "bm25s_pruned"
    # Frequent terms span many blocks, so the block bounds and skips are exercised.
    assert max(np.diff(pruned._matrix[0])) > 20 * BLOCK
    assert_same_hits(dense, pruned, queries)
    threaded = load_retriever(task.corpus, "bm25s_pruned", cache_dir=cache_root, threads=2)
    assert threaded.search_batch(queries, 10) == pruned.search_batch(queries, 10)


def tie_corpus(copies: int) -> Corpus:
    """Groups of identical passages, shuffled so corpus order differs from doc id order."""
    texts = [
        "Glaciers and ice cover the northern valleys.",
        "The capital of Norway is Oslo, on the fjord.",
        "Ice fishing on the frozen lake in winter.",
        "Rivers flow from the glaciers to the sea.",
    ]
    passages = [Passage(f"g{g}-{i}", "", text) for g, text in enumerate(texts) for i in range(copies)]
    passages += [Passage(f"u{i:04d}", "", f"unique filler words number {i} river") for i in range(3 * copies)]
    random.Random(2).shuffle(passages)
    return Corpus(passages)


@pytest.mark.parametrize("copies", [15, 400])
def test_ties_past_the_fetch_break_by_doc_id_like_bm25s(cache_root: Path, copies: int) -> None:
    corpus = tie_corpus(copies)
    dense, pruned = both(corpus, cache_root)
    queries = ["glaciers", "ice", "glaciers ice", "river", "capital Norway ice", "frozen rivers sea", "zzz"]
    assert_same_hits(dense, pruned, queries)
    hits = pruned.search("glaciers", 10)
    assert len({h.score for h in hits}) == 1 and [h.doc_id for h in hits] == sorted(h.doc_id for h in hits)
    assert pruned.search("glaciers", 0) == [] and pruned.search("the of", 5) == []
    assert len(pruned.search("river", 10 * copies)) == len(dense.search("river", 10 * copies))


def test_block_maxima_match_a_plain_computation() -> None:
    rng = np.random.default_rng(0)
    doc_freqs = rng.integers(1, 300, size=40)
    indptr = np.r_[0, np.cumsum(doc_freqs)]
    data = rng.random(indptr[-1]).astype(np.float32)
    docs = np.concatenate([np.sort(rng.choice(10_000, df, replace=False)) for df in doc_freqs]).astype(
        np.int32
    )
    skip = compute_block_max(indptr, lambda s, c: (data[s : s + c], docs[s : s + c]), range_postings=500)
    blocks = [
        (start, min(start + BLOCK, indptr[t + 1]))
        for t in range(40)
        for start in range(indptr[t], indptr[t + 1], BLOCK)
    ]
    assert skip.block_max.tolist() == [data[a:b].max() for a, b in blocks]
    assert skip.block_last.tolist() == [docs[b - 1] for a, b in blocks]
    assert skip.term_max.tolist() == [data[indptr[t] : indptr[t + 1]].max() for t in range(40)]


def small() -> Corpus:
    return tie_corpus(40)


def test_cache_meta_counts_and_checksums_cover_the_block_files(tmp_path: Path) -> None:
    first = load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path)
    assert not first.load_info.cached
    again = load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path)
    assert again.load_info.cached and again.load_info.path == first.load_info.path
    info = index_info(small(), "bm25s_pruned", cache_dir=tmp_path)
    assert info is not None and info["counts"]["n_blocks"] > 0
    assert info["key"]["backend"] == "bm25s_pruned" and info["key"]["backend_format"] == "bm25s-pruned-1"
    assert set(BLOCK_FILES) <= set(info["checksums"])


@pytest.mark.parametrize("victim", ["block_max.npy", "block_last.npy", "data.csc.index.npy"])
def test_damaged_files_are_named_and_rebuilt(tmp_path: Path, victim: str) -> None:
    retriever = load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path)
    expected, folder = retriever.search_batch(["glaciers ice", "river"], 5), retriever.load_info.path
    path = folder / victim
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(b ^ 0x5A for b in data[-8:])  # same size, damaged in place
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError) as caught:
        load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path)
    message = str(caught.value)
    assert victim in message and str(folder) in message and "--backend bm25s_pruned --rebuild" in message
    assert index_status(small(), "bm25s_pruned", cache_dir=tmp_path).state == "corrupt"
    with pytest.warns(RuntimeWarning, match="corrupt"):
        repaired = load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path, on_corrupt="rebuild")
    assert repaired.search_batch(["glaciers ice", "river"], 5) == expected


def test_inconsistent_block_files_fail_to_open_with_the_file_named(tmp_path: Path) -> None:
    """Files that hash clean but do not fit together (written by another version) are not used."""
    from searchenv.retrieval.cache import META_FILE
    from searchenv.retrieval.integrity import file_checksums

    folder = load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path).load_info.path
    block_ptr = np.load(folder / "block_ptr.npy")
    np.save(folder / "block_ptr.npy", block_ptr + 1)
    meta = json.loads((folder / META_FILE).read_text())
    meta["checksums"] = file_checksums(folder, meta["files"])
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(IndexCorruptError, match=r"block_ptr\.npy"):
        load_retriever(small(), "bm25s_pruned", cache_dir=tmp_path)


def test_auto_picks_by_corpus_size_and_says_which(tmp_path: Path) -> None:
    assert choose_backend(PRUNED_FROM_PASSAGES - 1).backend == "bm25s"
    assert choose_backend(PRUNED_FROM_PASSAGES).backend == "bm25s_pruned"
    assert "benchmarks/results/scale.md" in choose_backend(10**7).reason
    retriever = load_retriever(small(), "auto", cache_dir=tmp_path)
    assert retriever.backend == "bm25s"
    choice = retriever.load_info.choice
    assert (
        choice is not None and choice.backend == "bm25s" and str(choice).startswith("backend auto -> bm25s")
    )
    assert index_info(small(), "auto", cache_dir=tmp_path)["key"]["backend"] == "bm25s"
    assert load_retriever(small(), "bm25s", cache_dir=tmp_path).load_info.choice is None


def test_auto_is_a_cli_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from searchenv.cli_errors import check_backend
    from searchenv.index_cli import _resolve_auto

    check_backend("auto")
    args = type("Args", (), {"backend": "auto"})()
    _resolve_auto(args, 5_000_000)
    assert args.backend == "bm25s_pruned" and "backend auto -> bm25s_pruned" in capsys.readouterr().err
