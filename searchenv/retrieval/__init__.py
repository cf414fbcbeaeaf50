"""Retrieval: one tokenizer, three BM25 backends behind the ``Retriever`` protocol, an index cache.

from searchenv.retrieval import load_retriever
retriever = load_retriever(task.corpus, "bm25s")  # cached under $SEARCHENV_HOME/indexes
hits = retriever.search("capital of Norway", k=5)  # [Hit(doc_id, score), ...]
"""

from searchenv.retrieval.base import Hit, Retriever
from searchenv.retrieval.cache import (
    BACKENDS,
    IndexStatus,
    LoadInfo,
    ensure_index,
    index_folder,
    index_info,
    index_key,
    index_status,
    load_retriever,
    searchenv_home,
)
from searchenv.retrieval.integrity import IndexCorruptError
from searchenv.retrieval.tokenize import Tokenizer, default_tokenizer, tokenize

__all__ = [
    "BACKENDS",
    "Hit",
    "IndexCorruptError",
    "IndexStatus",
    "LoadInfo",
    "Retriever",
    "Tokenizer",
    "default_tokenizer",
    "ensure_index",
    "index_folder",
    "index_info",
    "index_key",
    "index_status",
    "load_retriever",
    "searchenv_home",
    "tokenize",
]
