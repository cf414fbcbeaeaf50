"""Prebuilt Lucene indexes (Pyserini's, e.g. ``wikipedia-dpr-100w``) as a corpus and a retriever.

Pyserini's prebuilt indexes are Lucene index folders written by Anserini's ``IndexCollection``
from a ``JsonCollection`` (``{"id", "contents"}`` lines, DPR's ``contents`` being ``"Title"``,
a newline, then the passage), analyzed by Anserini's default English analyzer (Lucene's
``StandardTokenizer``, lowercasing, Lucene's English stopwords, Porter stemming) and with the raw
JSON line stored in the ``raw`` field (``-storeRaw``; the ``-slim`` variants store no text and
cannot be read from). Such a folder is used as it is, without re-indexing:

- :class:`LuceneCorpus` reads passages out of the index's stored fields on demand (an id lookup
  per read, a small LRU cache), so a 21M-passage corpus never sits in Python memory.
- :class:`PrebuiltLuceneRetriever` searches it with BM25 (``k1``, ``b``; Pyserini's defaults are
  ours, 0.9 and 0.4) and analyzes queries with **the same English analyzer the index was built
  with**, not the project's tokenizer: the index holds Porter stems of Lucene's tokens, which our
  Snowball-stemmed, accent-folded tokens would often miss. Results match Anserini's own
  ``SimpleSearcher`` (tested), ties broken by doc id as for every backend.
- :func:`lucene_task` pairs the corpus with FlashRAG-style question files.

    task = lucene_task("indexes/lucene-index.wikipedia-dpr-100w.20210120.d1b9e6", {"test": "nq-test.jsonl"})
    env = gym.make("SearchQA-v0", task=task, split="test", backend="pyserini")

``load_retriever(corpus, "pyserini", index_path=...)`` opens a prebuilt index for any corpus
whose doc ids it holds; with a :class:`LuceneCorpus` the ``pyserini`` backend uses the corpus's
own index without being told. Nothing is cached or checksummed by this project: the folder is the
user's (Lucene verifies its own file footers on open).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from searchenv.retrieval.cache import LoadInfo
from searchenv.retrieval.pyserini_backend import PyseriniRetriever, doc_number_order, java, open_searcher
from searchenv.retrieval.ranking import MAX_QUERY_TERMS
from searchenv.retrieval.tokenize import default_tokenizer
from tasks.evidence import EvidenceReader
from tasks.jsonl import JsonlFormatError, _load_split, _split_name, split_contents
from tasks.records import Corpus, Passage, Question, Task

ANALYZER = "anserini DefaultEnglishAnalyzer (Porter stemmer, Lucene English stopwords)"
PASSAGE_CACHE = 4096  # passages kept per corpus: a step reads top_k of them, often again


def _classes() -> Any:
    """The JVM classes of the base backend plus the ones only prebuilt indexes need."""
    j = java()  # first: importing jnius starts the JVM, which needs Anserini on its class path
    from jnius import autoclass

    if not hasattr(j, "IndexReaderUtils"):
        j.IndexReaderUtils = autoclass("io.anserini.index.IndexReaderUtils")
        j.AnalyzerUtils = autoclass("io.anserini.analysis.AnalyzerUtils")
        j.EnglishAnalyzer = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer")
    return j


def lucene_index_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` resolved, checked to be a Lucene index folder (it holds a ``segments_N`` file)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no Lucene index folder at {folder}: download and extract the index first "
            "(e.g. tar xzf lucene-index.wikipedia-dpr-100w.*.tar.gz) and pass the extracted folder"
        )
    if not any(child.name.startswith("segments_") for child in folder.iterdir()):
        nested = sorted(p.parent for p in folder.glob("*/segments_*"))
        hint = f"; did you mean {nested[0]}?" if nested else ""
        raise FileNotFoundError(f"{folder} is not a Lucene index (no segments_N file){hint}")
    return folder


def _passage_from_stored(doc_id: str, raw: str | None, contents: str | None, where: Path) -> Passage:
    """A passage from a document's stored ``raw`` JSON (or stored ``contents``)."""
    if raw is not None:
        try:
            record = json.loads(raw)
        except ValueError:
            record = {"contents": raw}  # some collections store plain text as raw
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            return Passage(doc_id, str(record.get("title", "")), record["text"])
        if isinstance(record, dict) and isinstance(record.get("contents"), str):
            contents = record["contents"]
    if contents is None:
        raise ValueError(
            f"{where} stores no text for {doc_id!r} (a '-slim' index?): reads need an index built with "
            "-storeRaw or -storeContents, e.g. wikipedia-dpr-100w rather than wikipedia-dpr-100w-slim"
        )
    title, text = split_contents(contents)
    return Passage(doc_id, " ".join(title.split()), text)


class LuceneCorpus(Corpus):
    """The passages stored in a Lucene index folder, read on demand by doc id.

    A drop-in :class:`tasks.records.Corpus`: ``corpus[doc_id]``, ``len``, iteration and
    ``fingerprint()`` work; ``doc_ids`` (all ids, by Lucene doc number) is read from the index on
    first use only, since at 21M passages it takes minutes and over a GB.
    """

    def __init__(self, index_path: str | os.PathLike[str]) -> None:  # no super().__init__: lazy
        """Open the index at ``index_path`` (a folder holding ``segments_N``)."""
        self.lucene_index_path = lucene_index_dir(index_path)
        self._java = _classes()
        self._searcher = open_searcher(self.lucene_index_path)
        self._reader = self._searcher.getIndexReader()
        self._n_docs = int(self._reader.numDocs())
        self._fingerprint: str | None = None
        self._lookup = functools.lru_cache(maxsize=PASSAGE_CACHE)(self._read_passage)

    def __reduce__(self) -> tuple[type[LuceneCorpus], tuple[str]]:
        """Pickle as the path (async vector envs send the task to worker processes)."""
        return (LuceneCorpus, (str(self.lucene_index_path),))

    @functools.cached_property
    def doc_ids(self) -> tuple[str, ...]:  # type: ignore[override]
        """Every doc id, by Lucene doc number (read from the index once, on first use)."""
        return tuple(doc_number_order(self._searcher))

    def __getitem__(self, doc_id: str) -> Passage:
        """The stored passage ``doc_id`` (``KeyError`` if the index has none)."""
        if not isinstance(doc_id, str):
            raise KeyError(doc_id)
        passage = self._lookup(doc_id)
        if passage is None:
            raise KeyError(doc_id)
        return passage

    def _read_passage(self, doc_id: str) -> Passage | None:
        document = self._java.IndexReaderUtils.document(self._reader, doc_id)  # one id lookup
        if document is None:
            return None
        return _passage_from_stored(
            doc_id, document.get("raw"), document.get("contents"), self.lucene_index_path
        )

    def __iter__(self) -> Iterator[str]:
        """The doc ids, by Lucene doc number."""
        return iter(self.doc_ids)

    def __len__(self) -> int:
        """The number of (live) documents in the index."""
        return self._n_docs

    def passages(self) -> Iterator[Passage]:
        """Every passage, by Lucene doc number (slow on a large index: one lookup each)."""
        return (self[doc_id] for doc_id in self.doc_ids)

    def fingerprint(self) -> str:
        """sha256 over the index folder's file names and sizes and its document count.

        Cheap (no passage is read) and changes whenever Lucene writes a new commit.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256(f"lucene-index:{self._n_docs}".encode())
            for path in sorted(self.lucene_index_path.iterdir()):
                if path.is_file():
                    digest.update(f"{path.name}:{path.stat().st_size};".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


class PrebuiltLuceneRetriever(PyseriniRetriever):
    """BM25 over a prebuilt Lucene index, queries analyzed with Anserini's English analyzer."""

    backend = "pyserini"
    load_info: LoadInfo  # set by open_prebuilt, as load_retriever does for built indexes

    def __init__(self, searcher: Any, n_docs: int, lucene_index_path: Path) -> None:
        """Wrap an open ``IndexSearcher`` (use :func:`open_prebuilt`)."""
        super().__init__(searcher, n_docs, default_tokenizer(), ties_in_id_order=False)
        self._english = _classes().EnglishAnalyzer.newDefaultInstance()
        self.lucene_index_path = lucene_index_path
        self.analyzer = ANALYZER

    def _lucene_query(self, query: str) -> Any | None:
        """Lucene's analysis of ``query`` (as the index's), first ``MAX_QUERY_TERMS`` terms."""
        terms = list(self._java.AnalyzerUtils.analyze(self._english, query))[:MAX_QUERY_TERMS]
        if not terms:
            return None
        # The terms are analyzed already; whitespace analysis passes them through unchanged.
        return self._query_generator.buildQuery("contents", self._analyzer, " ".join(terms))


def open_prebuilt(
    index_path: str | os.PathLike[str],
    corpus: Mapping[str, Passage] | None = None,
    *,
    k1: float = 0.9,
    b: float = 0.4,
) -> PrebuiltLuceneRetriever:
    """A retriever over the prebuilt Lucene index at ``index_path``.

    ``corpus``, if given, must be the index's own :class:`LuceneCorpus` or hold the same number of
    passages with ids the index knows (checked on its first and last ids), since every hit is
    later read from it.
    """
    start = time.perf_counter()
    folder = lucene_index_dir(index_path)
    searcher = open_searcher(folder)
    searcher.setSimilarity(java().BM25Similarity(float(k1), float(b)))
    n_docs = int(searcher.getIndexReader().numDocs())
    if corpus is not None and getattr(corpus, "lucene_index_path", None) != folder:
        _check_corpus_matches(corpus, searcher, folder, n_docs)
    retriever = PrebuiltLuceneRetriever(searcher, n_docs, folder)
    meta = {"prebuilt": True, "n_docs": n_docs, "k1": float(k1), "b": float(b), "analyzer": ANALYZER}
    retriever.load_info = LoadInfo(folder, True, time.perf_counter() - start, meta)
    return retriever


def _check_corpus_matches(corpus: Mapping[str, Passage], searcher: Any, folder: Path, n_docs: int) -> None:
    ids = getattr(corpus, "doc_ids", None) or tuple(corpus)  # a Corpus keeps its ids as a tuple
    sample = list(ids[:3]) + list(ids[-3:])
    utils = _classes().IndexReaderUtils
    missing = [d for d in sample if utils.document(searcher.getIndexReader(), d) is None]
    if len(corpus) != n_docs or missing:
        raise ValueError(
            f"the Lucene index at {folder} ({n_docs:,} documents) does not hold this corpus "
            f"({len(corpus):,} passages{', e.g. no ' + repr(missing[0]) if missing else ''}); "
            "use lucene_task(index_path, ...) to read the passages from the index itself"
        )


def lucene_task(
    index_path: str | os.PathLike[str],
    splits: Mapping[str, str | os.PathLike[str]],
    name: str = "lucene",
    evidence_field: str | None = None,
) -> Task:
    """A task whose corpus is a prebuilt Lucene index and whose questions are FlashRAG JSONL files.

    Args:
        index_path: The extracted index folder (holding ``segments_N``).
        splits: Question files by split, as for ``tasks.jsonl.jsonl_task``, e.g.
            ``{"test": "nq-test.jsonl"}`` (``{id, question, golden_answers}`` lines).
        name: The task's name.
        evidence_field: Dotted path of supporting doc ids in a question line (optional).

    Raises:
        FileNotFoundError: ``index_path`` is not a Lucene index folder.
        JsonlFormatError: a question file is malformed.
    """
    corpus = LuceneCorpus(index_path)
    evidence = EvidenceReader(corpus, evidence_field)
    loaded: dict[str, tuple[Question, ...]] = {}
    for raw_split, path in splits.items():
        split = _split_name(raw_split)
        if split in loaded:
            raise ValueError(f"split {split!r} given twice (as {raw_split!r})")
        loaded[split] = tuple(_load_split(path, split, evidence))
    if not loaded:
        raise JsonlFormatError(
            "lucene_task needs at least one question file: splits={'test': 'questions.jsonl'}"
        )
    evidence.warn_if_missing(name, [str(path) for path in splits.values()])
    return Task(name, corpus, loaded)


__all__ = [
    "ANALYZER",
    "LuceneCorpus",
    "PrebuiltLuceneRetriever",
    "lucene_index_dir",
    "lucene_task",
    "open_prebuilt",
]
