"""A search step's observation from the retriever's hits, remembered per query.

Rendering a search result (query words, a snippet per hit, the hit lines) is the env's own work
in a search step, beside the retriever call; ``benchmarks/bench_env.py`` measures it. RL asks the
same queries again and again (every member of a GRPO group starts from the same question, and
epochs repeat questions), so each env remembers the rendered result of its recent queries: a
repeated query whose hits are the same (doc ids and scores, compared in full) reuses the text;
different hits (another index, a remote backend that changed) render afresh. The text is a pure
function of the hits, the corpus and the snippet length, all fixed for one view, so reuse can
never show anything a fresh render would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from searchenv.observations import render_hits
from searchenv.retrieval.base import Hit
from searchenv.snippets import best_snippet, query_words

# Queries remembered per env: a rollout's distinct queries, with room to spare; a few MB at most.
MEMO_QUERIES = 1024


@dataclass(frozen=True)
class RenderedSearch:
    """The observation of one search, with what the env's ``info`` and episode record need."""

    hits: list[Hit]
    observation: str
    doc_ids: tuple[str, ...]
    titles: tuple[str, ...]


class SearchView:
    """Renders hits for one corpus and snippet length; remembers the last ``memo_queries`` queries.

    >>> from types import SimpleNamespace
    >>> passages = {"d1": SimpleNamespace(title="Norway", text="Oslo is the capital.")}
    >>> view = SearchView(passages.__getitem__, snippet_chars=40)
    >>> words = view.words("capital of Norway")
    >>> print(view.render("capital of Norway", words, [Hit("d1", 1.5)]).observation)
    <information>
    [1] d1 | Norway | Oslo is the capital.
    </information>
    >>> first = view.render("capital of Norway", words, [Hit("d1", 1.5)])
    >>> view.render("capital of Norway", words, [Hit("d1", 1.5)]) is first  # remembered
    True
    >>> view.render("capital of Norway", words, [Hit("d1", 2.0)]) is first  # other hits: rendered again
    False
    """

    def __init__(
        self, passage_of: Callable[[str], Any], snippet_chars: int, memo_queries: int = MEMO_QUERIES
    ) -> None:
        self._passage_of = passage_of
        self.snippet_chars = snippet_chars
        self._memo_queries = memo_queries
        self._memo: dict[str, RenderedSearch] = {}
        self._words: dict[str, frozenset[str]] = {}

    def words(self, query: str) -> frozenset[str]:
        """The query's lowercase words (what snippets match), remembered with the query."""
        words = self._words.get(query)
        if words is None:
            words = query_words(query)
            if len(self._words) >= self._memo_queries:
                del self._words[next(iter(self._words))]
            self._words[query] = words
        return words

    def render(self, query: str, words: frozenset[str], hits: list[Hit]) -> RenderedSearch:
        """The observation of ``hits`` for ``query``: remembered if this query last gave the same hits."""
        rendered = self._memo.get(query)
        if rendered is not None and rendered.hits == hits:
            return rendered
        passage_of, max_chars = self._passage_of, self.snippet_chars
        shown = []
        for hit in hits:
            passage = passage_of(hit.doc_id)
            shown.append((hit.doc_id, passage.title, best_snippet(passage.text, words, max_chars)))
        rendered = RenderedSearch(
            list(hits), render_hits(shown), tuple(s[0] for s in shown), tuple(s[1] for s in shown)
        )
        if query not in self._memo and len(self._memo) >= self._memo_queries:
            del self._memo[next(iter(self._memo))]  # the oldest query
        self._memo[query] = rendered
        return rendered
