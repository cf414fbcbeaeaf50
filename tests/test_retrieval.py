"""Retrieval: tokenizer, the backends, their agreement, the index cache, the synthetic task, the CLI.

Backends are built once per module (numba compiles its retrieval loop once per process, and the
JVM can start only once per process), into a module-scoped cache folder.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchenv.retrieval import Hit, Retriever, Tokenizer, index_info, load_retriever, tokenize
from searchenv.retrieval.cache import META_FILE, ensure_index, index_folder, index_key
from searchenv.retrieval.rank_bm25_backend import RankBM25Retriever
from searchenv.retrieval.tokenize import MAX_TOKEN_CHARS
from tasks.records import Corpus, Passage
from tasks.synthetic import parse_synthetic_name, synthetic_task

BACKENDS = ("bm25s", "bm25s_pruned", "rank_bm25", "pyserini")
N_TWINS = 30  # identical passages: a tie group larger than any backend's first fetch


def small_corpus() -> Corpus:
    passages = [
        Passage("d01", "Norway", "Oslo is the capital of Norway. The currency is the Norwegian krone."),
        Passage("d02", "Sweden", "Stockholm is the capital of Sweden. Population: 10,551,707 people."),
        Passage("d03", "Côte d'Ivoire", "Yamoussoukro is the official capital; Abidjan is the largest city."),
        Passage("d04", "Japan", "東京 (Tokyo) is the capital and largest city of Japan."),
        Passage("d05", "Weather", "It rained all day in the mountains near the river."),
        Passage("d06", "", "The of and to."),  # nothing searchable: must not break any backend
    ]
    twins = [
        Passage(f"t{i}", "Twins", "An identical passage about glaciers and ice.") for i in range(N_TWINS)
    ]
    random.Random(0).shuffle(twins)  # insertion order != doc id order, and "t10" < "t9" as strings
    return Corpus(passages + twins)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("index-cache")


@pytest.fixture(scope="module")
def small(cache_root: Path) -> dict[str, Retriever]:
    corpus = small_corpus()
    return {backend: load_retriever(corpus, backend, cache_dir=cache_root) for backend in BACKENDS}


@pytest.fixture(scope="module")
def synthetic() -> tuple[Corpus, list[str]]:
    task = synthetic_task(3_000, seed=7, n_questions=150)
    questions = [q.question for split in task.splits.values() for q in split]
    rng = random.Random(1)
    words = [w for p in list(task.corpus.passages())[:300] for w in p.text.split()]
    # Short bag-of-words queries hit many near-ties; questions hit one planted fact each.
    word_queries = [" ".join(rng.sample(words, rng.randint(1, 4))) for _ in range(250)]
    return task.corpus, questions + word_queries


@pytest.fixture(scope="module")
def synthetic_results(synthetic: tuple[Corpus, list[str]], cache_root: Path) -> dict[str, object]:
    corpus, queries = synthetic
    retrievers = {backend: load_retriever(corpus, backend, cache_dir=cache_root) for backend in BACKENDS}
    return {
        "retrievers": retrievers,
        "hits": {backend: r.search_batch(queries, 10) for backend, r in retrievers.items()},
    }


# ------------------------------------------------------------------------------ tokenizer


def test_tokenizer_normalizes_case_accents_numbers_and_stopwords() -> None:
    tok = Tokenizer(stem=False)
    assert tok("The CAPITAL of Côte d'Ivoire") == ["capital", "cote", "ivoire"]
    assert tok("4,810 km and 4810 km") == ["4810", "km", "4810", "km"]
    assert tok("growth of 1.5% in 2024") == ["growth", "1.5", "2024"]
    assert tok("snake_case, e-mail: x@y.org") == ["snake", "case", "e", "mail", "x", "org"]
    assert tok("ＦＵＬＬＷＩＤＴＨ Straße") == ["fullwidth", "strasse"]
    assert tok("東京 Москва") == ["東京", "москва"]
    assert tok("") == tok("the of and !!! ...") == []
    assert tok("x" * 300) == ["x" * MAX_TOKEN_CHARS]


def test_stemming_is_on_by_default_and_named_in_the_key() -> None:
    stemmed, plain = Tokenizer(), Tokenizer(stem=False)
    assert stemmed.stem and stemmed("running countries") == ["run", "countri"]
    assert plain("running countries") == ["running", "countries"]
    assert stemmed.key != plain.key and "snowball" in stemmed.key and "nostem" in plain.key
    assert stemmed("4,810") == ["4810"]  # numbers are never stemmed
    assert tokenize("Capitals") == tokenize("capital")


# ------------------------------------------------------------------------ every backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_contract_and_ranking(small: dict[str, Retriever], backend: str) -> None:
    retriever = small[backend]
    assert isinstance(retriever, Retriever) and retriever.backend == backend
    hits = retriever.search("capital of Norway", k=3)
    assert hits[0].doc_id == "d01"
    assert {h.doc_id for h in hits} <= {"d01", "d02", "d03", "d04"}
    assert all(isinstance(h, Hit) and h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert retriever.search("Sweden population 10551707", k=1)[0].doc_id == "d02"


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_break_by_doc_id_even_at_the_kth_place(small: dict[str, Retriever], backend: str) -> None:
    retriever = small[backend]
    expected = sorted(f"t{i}" for i in range(N_TWINS))
    for k in (1, 3, 12, N_TWINS):
        hits = retriever.search("glaciers", k=k)
        assert [h.doc_id for h in hits] == expected[:k]
        assert len({h.score for h in hits}) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_is_clipped_and_validated(small: dict[str, Retriever], backend: str) -> None:
    retriever = small[backend]
    assert len(retriever.search("glaciers", k=10_000)) == N_TWINS  # only matching passages
    assert len(retriever.search("capital glaciers city", k=10_000)) == N_TWINS + 4
    assert retriever.search("glaciers", k=0) == []
    with pytest.raises(ValueError):
        retriever.search("glaciers", k=-1)
    with pytest.raises(TypeError):
        retriever.search("glaciers", k=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_stopword_unknown_and_unicode_queries(small: dict[str, Retriever], backend: str) -> None:
    retriever = small[backend]
    for query in ("", "   ", "the of and", "?!...", "zzzunknownterm", "<search></search>"):
        assert retriever.search(query, k=5) == []
    assert retriever.search("Cote d’Ivoire", k=1)[0].doc_id == "d03"
    assert retriever.search("東京", k=1)[0].doc_id == "d04"
    rng = random.Random(3)
    for _ in range(50):
        garbage = "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 40)))
        garbage = garbage.encode("utf-8", "replace").decode("utf-8", "replace")
        assert isinstance(retriever.search(garbage, k=3), list)
    assert isinstance(retriever.search("capital " * 5000, k=3), list)  # oversize: truncated, no error


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_batch_matches_search(small: dict[str, Retriever], backend: str) -> None:
    retriever = small[backend]
    queries = ["capital", "", "glaciers", "the", "largest city", "zzz"]
    assert retriever.search_batch(queries, k=4) == [retriever.search(q, k=4) for q in queries]
    assert retriever.search_batch([], k=4) == []


def test_bm25s_without_numba_ranks_the_same(
    small: dict[str, Retriever], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from searchenv.retrieval import bm25s_backend

    monkeypatch.setattr(bm25s_backend, "numba_available", lambda: False)
    plain = load_retriever(small_corpus(), "bm25s", cache_dir=tmp_path)
    assert not plain.uses_numba and small["bm25s"].uses_numba
    for query in ("capital", "glaciers", "largest city capital", "the", "Côte"):
        for k in (1, 3, 50):
            assert plain.search(query, k) == small["bm25s"].search(query, k)


# -------------------------------------------------------------------- backends agree


def _top10_equal_up_to_ties(a: list[Hit], b: list[Hit], full: np.ndarray, position: dict[str, int]) -> bool:
    """Same scores rank by rank (float32 vs float64), and any differing doc is tied at the boundary."""
    if len(a) != len(b):
        return False
    if not np.allclose([h.score for h in a], [h.score for h in b], rtol=1e-5, atol=1e-6):
        return False
    if not a:
        return True
    boundary = b[-1].score
    differing = {h.doc_id for h in a} ^ {h.doc_id for h in b}
    return all(abs(full[position[d]] - boundary) <= 1e-5 * max(1.0, boundary) for d in differing)


def test_bm25s_matches_rank_bm25_up_to_ties(synthetic: tuple[Corpus, list[str]], synthetic_results) -> None:
    corpus, queries = synthetic
    reference: RankBM25Retriever = synthetic_results["retrievers"]["rank_bm25"]
    hits = synthetic_results["hits"]
    position = {doc_id: i for i, doc_id in enumerate(corpus.doc_ids)}
    mismatched = [
        q
        for q, a, b in zip(queries, hits["bm25s"], hits["rank_bm25"], strict=True)
        if not _top10_equal_up_to_ties(a, b, reference.scores(q), position)
    ]
    assert not mismatched, f"{len(mismatched)} queries differ beyond ties, e.g. {mismatched[:3]}"
    identical = sum(
        a == b or [h.doc_id for h in a] == [h.doc_id for h in b]
        for a, b in zip(hits["bm25s"], hits["rank_bm25"], strict=True)
    )
    assert identical >= 0.95 * len(queries)  # doc-id tie-breaking makes nearly all lists identical


def test_bm25s_and_pyserini_overlap(synthetic_results) -> None:
    hits = synthetic_results["hits"]
    overlaps = [
        len({h.doc_id for h in a} & {h.doc_id for h in b}) / max(len(a), len(b), 1)
        for a, b in zip(hits["bm25s"], hits["pyserini"], strict=True)
        if a or b
    ]
    mean = float(np.mean(overlaps))
    print(f"\nbm25s vs pyserini mean top-10 overlap over {len(overlaps)} queries: {mean:.4f}")
    assert mean >= 0.9
    # Scores agree closely: only Lucene's one-byte document lengths differ.
    tops = [(a[0].score, b[0].score) for a, b in zip(hits["bm25s"], hits["pyserini"], strict=True) if a and b]
    bm25s_top, pyserini_top = np.array(tops).T
    assert np.allclose(bm25s_top, pyserini_top, rtol=0.05)


def test_synthetic_questions_are_answerable_by_search(synthetic_results) -> None:
    task = synthetic_task(3_000, seed=7, n_questions=150)
    questions = [q for split in task.splits.values() for q in split]
    for backend in BACKENDS:
        found = [
            q.supporting_doc_ids[0] in {h.doc_id for h in hits}
            for q, hits in zip(questions, synthetic_results["hits"][backend][: len(questions)], strict=True)
        ]
        assert np.mean(found) >= 0.95, backend


# -------------------------------------------------------------------------------- cache


def test_second_load_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = small_corpus()
    builds: list[Path] = []
    original = RankBM25Retriever.build

    def counting_build(*args, **kwargs):
        builds.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(RankBM25Retriever, "build", staticmethod(counting_build))
    first = load_retriever(corpus, "rank_bm25", cache_dir=tmp_path)
    second = load_retriever(corpus, "rank_bm25", cache_dir=tmp_path)
    assert (first.load_info.cached, second.load_info.cached, len(builds)) == (False, True, 1)
    assert second.search("glaciers", 3) == first.search("glaciers", 3)
    other = load_retriever(corpus, "rank_bm25", k1=1.2, cache_dir=tmp_path)  # new parameters, new index
    assert not other.load_info.cached and other.load_info.path != first.load_info.path
    meta = index_info(corpus, "rank_bm25", cache_dir=tmp_path)
    assert meta is not None and meta["key"]["k1"] == 0.9 and meta["counts"]["n_docs"] == len(corpus)
    rebuilt = load_retriever(corpus, "rank_bm25", cache_dir=tmp_path, rebuild=True)
    assert not rebuilt.load_info.cached and len(builds) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_killed_build_leaves_nothing_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = small_corpus()

    def crashing_build(corpus, folder, **kwargs):
        (folder / "tokens.pkl").write_bytes(b"half written")
        raise KeyboardInterrupt  # the build dies mid-way

    with monkeypatch.context() as patch:
        patch.setattr(RankBM25Retriever, "build", staticmethod(crashing_build))
        with pytest.raises(KeyboardInterrupt):
            load_retriever(corpus, "rank_bm25", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temp folder went with the failure
    assert index_info(corpus, "rank_bm25", cache_dir=tmp_path) is None

    # A process killed outright leaves its temp folder, and maybe a target folder without meta.
    folder = index_folder(index_key(corpus, "rank_bm25", k1=0.9, b=0.4, tokenizer=Tokenizer()), tmp_path)
    folder.mkdir()
    (folder / "tokens.pkl").write_bytes(b"garbage")
    leftover = tmp_path / f".tmp-{folder.name}-{_dead_pid()}-abcd"
    leftover.mkdir()
    (leftover / "tokens.pkl").write_bytes(b"garbage")
    assert index_info(corpus, "rank_bm25", cache_dir=tmp_path) is None
    retriever = load_retriever(corpus, "rank_bm25", cache_dir=tmp_path)
    assert not retriever.load_info.cached and retriever.search("glaciers", 1)[0].doc_id == "t0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]

    # A meta.json for another key (or unreadable) also means "not an index".
    meta = json.loads((folder / META_FILE).read_text())
    meta["key"]["k1"] = 5.0
    (folder / META_FILE).write_text(json.dumps(meta))
    assert not load_retriever(corpus, "rank_bm25", cache_dir=tmp_path).load_info.cached
    (folder / META_FILE).write_text("{not json")
    assert not load_retriever(corpus, "rank_bm25", cache_dir=tmp_path).load_info.cached
    assert load_retriever(corpus, "rank_bm25", cache_dir=tmp_path).load_info.cached


def test_concurrent_builders_keep_the_first_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = small_corpus()
    original = RankBM25Retriever.build
    rival_meta: list[dict] = []
    calls: list[Path] = []

    def racing_build(corpus_, folder, **kwargs):
        calls.append(folder)
        if len(calls) == 1:  # while we build, another builder finishes the same index first
            rival_meta.append(ensure_index(corpus_, "rank_bm25", cache_dir=tmp_path)[1])
        return original(corpus_, folder, **kwargs)

    monkeypatch.setattr(RankBM25Retriever, "build", staticmethod(racing_build))
    folder, meta, cached = ensure_index(corpus, "rank_bm25", cache_dir=tmp_path)
    assert not cached and meta["built_at"] == rival_meta[0]["built_at"] and meta == rival_meta[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # our copy was discarded
    assert load_retriever(corpus, "rank_bm25", cache_dir=tmp_path).load_info.cached


def test_bad_corpora_and_parameters_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no searchable terms"):
        load_retriever(Corpus([Passage("a", "", "the of and")]), "rank_bm25", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown retrieval backend"):
        load_retriever(small_corpus(), "nope", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="k1"):
        load_retriever(small_corpus(), "rank_bm25", b=1.5, cache_dir=tmp_path)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------- synthetic task


def test_synthetic_task_is_deterministic_and_well_formed() -> None:
    a, b = synthetic_task(2_000, seed=3, n_questions=100), synthetic_task(2_000, seed=3, n_questions=100)
    assert a.corpus.fingerprint() == b.corpus.fingerprint() and a.splits == b.splits
    assert synthetic_task(2_000, seed=4, n_questions=100).corpus.fingerprint() != a.corpus.fingerprint()
    sizes = {split: len(qs) for split, qs in a.splits.items()}
    assert sizes == {"train": 80, "dev": 10, "test": 10}
    questions = [q for qs in a.splits.values() for q in qs]
    assert len({q.qid for q in questions}) == len({q.question for q in questions}) == 100
    for q in questions:
        gold = a.corpus[q.supporting_doc_ids[0]]
        assert q.answers[0] in gold.text and q.split in a.splits
    with pytest.raises(ValueError, match="facts"):
        synthetic_task(100, n_questions=500)
    assert parse_synthetic_name("synthetic-1m") == 1_000_000 and parse_synthetic_name("factbook") is None


# --------------------------------------------------------------------------------- CLI


def test_index_cli_build_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from searchenv.index_cli import main

    common = ["--task", "synthetic-1k", "--backend", "rank_bm25", "--cache-dir", str(tmp_path)]
    assert main(["info", *common]) == 1
    assert "searchenv index build" in capsys.readouterr().err
    assert main(["build", *common, "--no-progress"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["counts"]["n_docs"] == 1_000 and built["key"]["backend"] == "rank_bm25"
    assert main(["info", *common]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == built["digest"]
