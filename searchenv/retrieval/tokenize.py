"""The one tokenizer every retrieval backend uses, for the index and for queries alike.

Rules, in order: case folding; Unicode compatibility decomposition (NFKD) with accents stripped,
so "Côte" matches "Cote"; split into runs of letters and digits, where numbers keep their
thousands separators and decimal points ("4,810" and "4810" are the same token, "3.5" stays one
token); English stopwords dropped; tokens longer than ``MAX_TOKEN_CHARS`` truncated; then
Snowball English stemming when PyStemmer is installed (the default) or asked for.

Backends must agree token for token, so anything that changes the output bumps
``TOKENIZER_VERSION``: it is part of every index's cache key.

>>> tok = Tokenizer(stem=False)
>>> tok("The capital of Côte d'Ivoire is Yamoussoukro.")
['capital', 'cote', 'ivoire', 'yamoussoukro']
>>> tok("Population: 4,810,230 (2024 est.); growth 1.5%")
['population', '4810230', '2024', 'est', 'growth', '1.5']
>>> tok("the of and") == tok("") == []
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache

TOKENIZER_VERSION = "1"

# Lucene's whitespace tokenizer splits tokens at 255 chars; capping well below keeps every
# backend seeing exactly the same terms, and nothing meaningful is that long.
MAX_TOKEN_CHARS = 64

# Order matters: thousands-grouped numbers, then decimals / dotted numbers, then any run of
# letters and digits ("covid19", "b52"). [^\W_] is "a word character that is not underscore".
_TOKEN_PATTERN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)+|[^\W_]+")

# A compact English stopword list (function words, pronouns, auxiliaries) plus the fragments
# that apostrophes leave behind ("isn't" -> "isn", "t"; "d'Ivoire" -> "d", "ivoire"). Fragments that
# are also real words ("won" the currency, "don" the river, "shan" the state) are kept.
_STOPWORDS_TEXT = """
    a about above after again against all am an and any are aren as at be because been before
    being below between both but by can cannot could couldn did didn do does doesn doing down
    during each few for from further had hadn has hasn have haven having he her here hers herself
    him himself his how i if in into is isn it its itself just let ll m me more most mustn my
    myself no nor not now o of off on once only or other ought our ours ourselves out over own re
    s same she should shouldn so some such t than that the their theirs them themselves then
    there these they this those through to too under until up ve very was wasn we were weren what
    when where which while who whom why will with would wouldn y you your yours yourself
    yourselves d
"""
ENGLISH_STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

# Memo of raw token -> final term ("" for stopwords). Real corpora repeat a small vocabulary, so
# after warm-up nearly every token costs one dict lookup. Bounded so number-heavy corpora cannot
# grow it without limit.
_MEMO_LIMIT = 2_000_000


class Tokenizer:
    """Callable text -> list of terms. Instances are cheap; use :func:`default_tokenizer`.

    ``stem=None`` stems when PyStemmer is importable; ``stem=True`` requires it.
    """

    def __init__(self, stem: bool | None = None) -> None:
        stemmer = _load_stemmer(required=stem is True) if stem is not False else None
        self.stem: bool = stemmer is not None
        self._stem_word = stemmer.stemWord if stemmer is not None else None
        self._memo: dict[str, str] = {}

    @property
    def key(self) -> str:
        """Identifies the exact token stream; goes into every index's cache key.

        >>> Tokenizer(stem=False).key
        'searchenv-tok-v1+nostem'
        """
        return f"searchenv-tok-v{TOKENIZER_VERSION}+{'snowball-english' if self.stem else 'nostem'}"

    def __repr__(self) -> str:
        return f"Tokenizer(stem={self.stem})"

    def __call__(self, text: str) -> list[str]:
        """The tokens of ``text``: lower-cased, accent-folded, stopwords dropped, stemmed."""
        if not text:
            return []
        memo = self._memo
        terms: list[str] = []
        for raw in _TOKEN_PATTERN.findall(_normalize(text)):
            term = memo.get(raw)
            if term is None:
                term = self._term(raw)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[raw] = term
            if term:
                terms.append(term)
        return terms

    def _term(self, raw: str) -> str:
        """Final form of one raw token, or "" when it is a stopword."""
        if raw in ENGLISH_STOPWORDS:
            return ""
        if "," in raw:  # only thousands-grouped numbers contain commas
            raw = raw.replace(",", "")
        raw = raw[:MAX_TOKEN_CHARS]
        if self._stem_word is not None and not raw[0].isdigit():
            return self._stem_word(raw)
        return raw

    def tokenize_many(self, texts: Iterable[str]) -> Iterator[list[str]]:
        """Lazily tokenize a stream of texts (for corpora too large to hold twice)."""
        for text in texts:
            yield self(text)


def _normalize(text: str) -> str:
    """NFKC, case-fold and strip combining accents; ASCII text takes a fast path.

    >>> _normalize("ＭÜNCHEN Straße")
    'munchen strasse'
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _load_stemmer(required: bool):  # -> Stemmer.Stemmer | None
    try:
        import Stemmer  # PyStemmer
    except ImportError:
        if required:
            raise ImportError("stemming needs PyStemmer: pip install PyStemmer") from None
        return None
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=2)
def default_tokenizer(stem: bool | None = None) -> Tokenizer:
    """The process-wide shared tokenizer (shared so its memo is warm for every backend)."""
    return Tokenizer(stem=stem)


def tokenize(text: str, stem: bool | None = None) -> list[str]:
    """Tokenize with the shared default tokenizer.

    >>> tokenize("Running rivers of Norway", stem=False)
    ['running', 'rivers', 'norway']
    """
    return default_tokenizer(stem)(text)


def passage_text(title: str, text: str) -> str:
    r"""What gets indexed for a passage: its title, then its text.

    >>> passage_text("Norway", "Oslo is the capital.")
    'Norway\nOslo is the capital.'
    """
    return f"{title}\n{text}" if title else text


def tokenize_corpus(
    passages: Iterable[object], tokenizer: Tokenizer, *, progress: bool = False, total: int | None = None
) -> Iterator[list[str]]:
    """Terms of each passage (title and text), lazily, with an optional progress bar.

    ``passages`` holds objects with ``title`` and ``text`` attributes (``tasks.records.Passage``).
    """
    from tqdm.auto import tqdm

    for passage in tqdm(passages, total=total, disable=not progress, desc="tokenize", unit="doc"):
        yield tokenizer(passage_text(passage.title, passage.text))
