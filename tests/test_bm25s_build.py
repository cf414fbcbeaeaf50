"""The streaming bm25s builder writes exactly the files bm25s's own index() + save() write."""

from __future__ import annotations

import json
import random
from pathlib import Path

import bm25s
import numpy as np
import pytest

from searchenv.retrieval import default_tokenizer, load_retriever
from searchenv.retrieval.bm25s_backend import BM25sRetriever
from searchenv.retrieval.bm25s_build import INDEX_FILES, collect_pairs, column_blocks, write_lucene_index
from searchenv.retrieval.ranking import save_doc_rank
from searchenv.retrieval.tokenize import tokenize_corpus
from tasks.factbook import factbook_task
from tasks.records import Corpus
from tasks.synthetic import synthetic_task

ARRAYS = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")


def reference_index(documents: list[list[str]], folder: Path, k1: float, b: float) -> Path:
    """What the build did before the streaming builder: bm25s's own index() and save()."""
    vocab: dict[str, int] = {}
    corpus_ids = [[vocab.setdefault(term, len(vocab)) for term in terms] for terms in documents]
    model = bm25s.BM25(k1=k1, b=b, method="lucene", backend="numpy")
    model.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(str(folder), show_progress=False)
    return folder


def streamed_index(documents: list[list[str]], folder: Path, k1: float, b: float, **options) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    counts = write_lucene_index(iter(documents), folder, k1=k1, b=b, **options)
    assert counts == {
        "n_docs": len(documents),
        "n_tokens": sum(map(len, documents)),
        "vocab_size": len({t for terms in documents for t in terms}),
    }
    return folder


def assert_same_index(ours: Path, theirs: Path) -> None:
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    for name in ARRAYS:
        a, b = np.load(ours / name), np.load(theirs / name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{name}: bits differ"
    for name in ("vocab.index.json", "params.index.json"):
        assert json.loads((ours / name).read_text()) == json.loads((theirs / name).read_text()), name
    for name in INDEX_FILES:  # and byte for byte, headers and JSON layout included
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def tokenized(corpus: Corpus) -> list[list[str]]:
    return list(tokenize_corpus(corpus.passages(), default_tokenizer()))


@pytest.fixture(scope="module")
def factbook_terms() -> list[list[str]]:
    return tokenized(factbook_task().corpus)


@pytest.fixture(scope="module")
def synthetic_corpus() -> Corpus:
    return synthetic_task(2_000, seed=3, n_questions=100).corpus


# Both scatter implementations; tiny chunks so one term's pairs span many chunks, and tiny
# column blocks so the output is assembled from many blocks, some holding one oversized column.
BUILDS = [
    pytest.param({"use_numba": True}, id="numba"),
    pytest.param({"use_numba": False}, id="numpy"),
    pytest.param({"use_numba": True, "chunk_docs": 300, "block_pairs": 40_000}, id="numba-small"),
    pytest.param({"use_numba": False, "chunk_docs": 300, "block_pairs": 40_000}, id="numpy-small"),
]


@pytest.mark.parametrize("options", BUILDS)
def test_factbook_index_is_bm25s_own(factbook_terms, tmp_path: Path, options: dict) -> None:
    reference = reference_index(factbook_terms, tmp_path / "bm25s", 0.9, 0.4)
    assert_same_index(streamed_index(factbook_terms, tmp_path / "ours", 0.9, 0.4, **options), reference)


@pytest.mark.parametrize("k1, b", [(0.9, 0.4), (1.2, 0.75), (0.0, 0.5), (2.0, 0.0), (1.5, 1.0)])
@pytest.mark.parametrize("options", BUILDS[:2])
def test_synthetic_index_is_bm25s_own(synthetic_corpus, tmp_path: Path, k1, b, options) -> None:
    terms = tokenized(synthetic_corpus)
    reference = reference_index(terms, tmp_path / "bm25s", k1, b)
    assert_same_index(streamed_index(terms, tmp_path / "ours", k1, b, **options), reference)


EDGE_CASES = {
    "repeated terms": [["ice", "ice", "ice", "fire"], ["fire"], ["ice"] * 300 + ["rock"]],
    "passages with no terms": [[], ["oslo", "norway"], [], [], ["oslo"], []],
    "one passage": [["capital", "oslo", "capital"]],
    "one term, one passage": [["oslo"]],
    "terms in every passage": [["x", "y", "x"], ["y", "x"], ["x", "y", "z"], ["y", "x", "y"]],
    "count past uint8": [["w"] * 70_000 + ["v"], ["v", "w"]],
}


@pytest.mark.parametrize("documents", EDGE_CASES.values(), ids=EDGE_CASES.keys())
@pytest.mark.parametrize(
    "options",
    [
        *BUILDS[:2],
        pytest.param({"chunk_docs": 1, "block_pairs": 1, "use_numba": True}, id="numba-1"),
        pytest.param({"chunk_docs": 1, "block_pairs": 1, "use_numba": False}, id="numpy-1"),
    ],
)
def test_edge_cases_are_bm25s_own(tmp_path: Path, documents, options) -> None:
    reference = reference_index(documents, tmp_path / "bm25s", 0.9, 0.4)
    assert_same_index(streamed_index(documents, tmp_path / "ours", 0.9, 0.4, **options), reference)


def test_pairs_are_counted_per_passage() -> None:
    vocab, chunks, lengths = collect_pairs([["b", "a", "b"], [], ["a"], ["c", "c"]], chunk_docs=2)
    assert vocab == {"b": 0, "a": 1, "c": 2} and lengths.tolist() == [3, 0, 1, 2]
    assert [c.pairs_per_doc.tolist() for c in chunks] == [[2, 0], [1, 1]]
    assert [c.terms.tolist() for c in chunks] == [[0, 1], [1, 2]]
    assert [c.counts.tolist() for c in chunks] == [[2, 1], [1, 2]]
    assert chunks[0].counts.dtype == np.uint8


@pytest.mark.parametrize(
    "documents, match",
    [([], "no searchable terms"), ([[], []], "no searchable terms")],
)
def test_corpus_without_terms_is_refused(tmp_path: Path, documents, match) -> None:
    with pytest.raises(ValueError, match=match):
        write_lucene_index(documents, tmp_path, k1=0.9, b=0.4)
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


@pytest.mark.parametrize("k1, b", [(-0.1, 0.4), (0.9, 1.5), (0.9, -0.1), (float("nan"), 0.4)])
def test_bad_parameters_are_refused(tmp_path: Path, k1, b) -> None:
    with pytest.raises(ValueError, match="k1 >= 0 and 0 <= b <= 1"):
        write_lucene_index([["oslo"]], tmp_path, k1=k1, b=b)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_lucene_index([["oslo"]], tmp_path / "nowhere", k1=0.9, b=0.4)


@pytest.mark.parametrize("option", ["chunk_docs", "block_pairs"])
def test_sizes_must_be_positive(tmp_path: Path, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        write_lucene_index([["oslo"]], tmp_path, k1=0.9, b=0.4, **{option: 0})


def test_column_blocks_cover_every_column_once() -> None:
    indptr = np.cumsum([0, 5, 1, 1, 9, 0, 2, 2])
    for block_pairs in (1, 2, 3, 8, 100):
        blocks = column_blocks(indptr, block_pairs)
        assert [first for first, _ in blocks] == [0] + [stop for _, stop in blocks[:-1]]
        assert blocks[-1][1] == len(indptr) - 1
        # within the limit, unless the block is a single oversized column
        assert all(indptr[stop] - indptr[first] <= block_pairs or stop == first + 1 for first, stop in blocks)


def test_retriever_searches_as_with_bm25s_own_build(synthetic_corpus, tmp_path: Path) -> None:
    corpus = synthetic_corpus
    ours = load_retriever(corpus, "bm25s", cache_dir=tmp_path / "cache")
    assert not ours.load_info.cached  # built now, by BM25sRetriever.build through the atomic folder
    folder = ours.load_info.path
    assert sorted(p.name for p in folder.iterdir()) == sorted([*INDEX_FILES, "doc_rank.npy", "meta.json"])

    reference = reference_index(tokenized(corpus), tmp_path / "bm25s", 0.9, 0.4)
    save_doc_rank(reference, corpus.doc_ids)
    for name in INDEX_FILES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
    theirs = BM25sRetriever.load(reference, corpus, tokenizer=default_tokenizer(), k1=0.9, b=0.4)

    rng = random.Random(5)
    words = [w for p in list(corpus.passages())[:200] for w in p.text.split()]
    queries = [" ".join(rng.sample(words, rng.randint(1, 5))) for _ in range(200)]
    queries += [p.title for p in list(corpus.passages())[:50]] + ["", "the of and", "zzzunknown"]
    assert ours.search_batch(queries, 10) == theirs.search_batch(queries, 10)
    assert [ours.search(q, 3) for q in queries[:40]] == [theirs.search(q, 3) for q in queries[:40]]
    assert any(ours.search_batch(queries, 10))  # the queries do hit something
