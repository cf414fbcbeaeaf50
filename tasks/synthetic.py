"""Synthetic scale corpora: millions of realistic-ish passages with verifiable planted facts.

Each passage belongs to an invented place ("Velorin") and reads like an encyclopedia section: a
title ("Velorin (economy)"), Zipfian filler text drawn from a fixed vocabulary (common English
words first, then invented words for the long tail), and in the middle either a planted fact
("The capital of Velorin is Tamiroka.") or a sentence that only mentions the place. Every place
has about eight passages, the first five of which carry one fact each, so a question about a fact
has one gold passage and several distractors sharing its rare entity name.

Generation is vectorized with numpy and deterministic in ``seed``: 1M passages take well under
a minute. Only ``tasks.records`` is used (tasks never import searchenv).
"""

from __future__ import annotations

import numpy as np

from tasks.records import Corpus, Passage, Question, Task

PASSAGES_PER_PLACE = 8
MIN_WORDS, MAX_WORDS = 36, 90
SENTENCE_END_PROBABILITY = 1 / 12
ZIPF_EXPONENT, ZIPF_SHIFT = 1.05, 2.7  # Zipf-Mandelbrot: p(rank r) ~ 1 / (r + shift) ** exponent
TAIL_WORDS = 20_000
SPLIT_SHARES = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
_CHUNK = 50_000  # passages generated per numpy batch (bounds temporary memory)

# Common words, most frequent first: function words lead, as in real text.
_COMMON_WORDS_TEXT = """
        the of and to in a is was for on as with by that it from at are be this which has its an or
        were also have had but not their been after more one two first new other most some many
        between during into than over under about while since until both each such only these there
        country region city river mountain capital government economy population people language
        trade industry agriculture coast border island north south east west central national state
        president minister parliament party election law court army military war independence colony
        century year history culture religion school university education health water land forest
        climate rain winter summer temperature area square kilometers percent growth market export
        import oil gas coal gold iron copper fish rice wheat cotton sugar coffee tea cattle sheep farm
        village town port road railway airport bridge highway ship route network power energy
        electricity production service tourism bank money currency tax debt budget income poverty
        labor force worker union company business investment foreign domestic public private local
        federal provincial district council assembly constitution republic kingdom empire dynasty
        king queen prince leader reform policy program plan development project support aid
        agreement treaty member organization alliance conflict peace refugee migration urban rural
        ethnic group majority minority official spoken native ancient modern traditional major small
        large high low long short highest lowest largest known located founded established built
        became remained included produced increased declined expanded following main several various
        important significant average annual total estimated based northern southern eastern western
        coastal mountainous tropical dry fertile desert plain plateau valley lake sea ocean bay gulf
        peninsula delta volcano glacier earthquake flood drought storm environment pollution wildlife
        species park reserve heritage museum art music festival food sport football team media radio
        television newspaper internet telephone mobile communication satellite station transport
        vehicle capacity output crop harvest livestock mining mineral timber textile manufacturing
        machinery chemical equipment product partner neighbor territory province administrative
        division municipality citizen resident birth death rate life expectancy literacy age male
        female children family household housing sanitation access medical hospital doctor disease
"""
COMMON_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_COMMON_WORDS_TEXT.split()))
SECTIONS = ("government", "economy", "geography", "people", "history", "transport", "energy", "culture")
CURRENCY_UNITS = ("crown", "dinar", "florin", "mark", "peso", "rupee", "shilling", "franc", "lira")
MENTION_TEMPLATES = (
    "{place} is known for its {w1} and {w2}.",
    "Many people in {place} work in {w1}.",
    "The {w1} of {place} grew during the {w2} period.",
    "Visitors to {place} often mention its {w1}.",
)
# Relation -> (fact sentence, question). The value is planted verbatim in the gold passage.
RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("capital", "The capital of {place} is {value}.", "What is the capital of {place}?"),
    ("currency", "The currency of {place} is the {value}.", "What is the currency of {place}?"),
    ("highest_point", "The highest point of {place} is {value}.", "What is the highest point of {place}?"),
    ("population", "{place} has a population of {value} people.", "What is the population of {place}?"),
    ("founded", "{place} was founded in {value}.", "In what year was {place} founded?"),
)

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = np.array([c + v for c in _CONSONANTS for v in _VOWELS])


def _invented_words(rng: np.random.Generator, n: int, syllables: int, coda: str = "") -> list[str]:
    """``n`` distinct invented words of ``syllables`` consonant-vowel pairs (+ one ``coda`` letter).

    Kinds differ in length or final letter (filler 6 letters, places 7 ending in r/s/l, coins 7
    ending in n/k/t, cities 8, peaks 9 ending in h), so words of different kinds never collide.
    """
    space = len(_SYLLABLES) ** syllables * max(1, len(coda))
    if n > space // 2:
        raise ValueError(f"cannot invent {n} distinct words from {space} combinations")
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < n:
        drawn = rng.integers(0, space, size=int(n * 1.3) + 16)
        merged = np.concatenate([codes, drawn])
        _, first = np.unique(merged, return_index=True)
        codes = merged[np.sort(first)]
    codes = codes[:n]
    words = np.full(n, "", dtype=object)
    rest = codes.copy()
    if coda:
        words = np.array(list(coda), dtype=object)[rest % len(coda)]
        rest //= len(coda)
    for _ in range(syllables):
        words = _SYLLABLES.astype(object)[rest % len(_SYLLABLES)] + words
        rest //= len(_SYLLABLES)
    return words.tolist()


def _name_syllables(n: int, coda: str) -> int:
    """3 syllables while they hold ``n`` words (up to 4,116,000 passages), else 4.

    A fourth syllable keeps the final letter, so such names (9 letters) still never collide with
    another kind; smaller corpora keep their 3-syllable names, and so stay exactly as they were.

    >>> _name_syllables(514_500, "rsl"), _name_syllables(514_501, "rsl")
    (3, 4)
    """
    return 3 if n <= len(_SYLLABLES) ** 3 * len(coda) // 2 else 4


def vocabulary() -> list[str]:
    """The fixed vocabulary, by frequency rank: common words, then invented tail words."""
    tail = _invented_words(np.random.default_rng(12345), TAIL_WORDS, syllables=3)
    return list(COMMON_WORDS) + [w for w in tail if w not in COMMON_WORDS]


def _zipf_cdf(size: int) -> np.ndarray:
    weights = 1.0 / (np.arange(size) + 1.0 + ZIPF_SHIFT) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def synthetic_task(n_passages: int = 10_000, seed: int = 0, n_questions: int = 200) -> Task:
    """A corpus of ``n_passages`` passages and ``n_questions`` single-hop questions about it.

    >>> task = synthetic_task(400, seed=1, n_questions=20)
    >>> len(task.corpus), sum(len(qs) for qs in task.splits.values())
    (400, 20)
    >>> q = task.questions("train")[0]
    >>> all(q.answers[0] in task.corpus[d].text for d in q.supporting_doc_ids)
    True
    """
    if n_passages < 1 or n_questions < 0:
        raise ValueError(f"need n_passages >= 1 and n_questions >= 0, got {n_passages}, {n_questions}")
    rng = np.random.default_rng(seed)
    n_places = max(1, -(-n_passages // PASSAGES_PER_PLACE))
    places = [w.capitalize() for w in _invented_words(rng, n_places, _name_syllables(n_places, "rsl"), "rsl")]
    facts = _place_facts(rng, n_places)

    # Passage p belongs to place owner[p]; slot[p] numbers that place's passages 0, 1, ...
    owner = rng.permutation(np.arange(n_passages) % n_places)
    order = np.argsort(owner, kind="stable")
    slot = np.empty(n_passages, dtype=np.int64)
    slot[order] = np.arange(n_passages) - np.searchsorted(owner[order], owner[order])
    has_fact = slot < len(RELATIONS)

    n_facts = int(has_fact.sum())
    if n_questions > n_facts:
        raise ValueError(
            f"{n_passages} passages hold only {n_facts} facts; asked for {n_questions} questions"
        )

    width = len(str(max(n_passages - 1, 1)))
    doc_ids = [f"syn{p:0{width}d}" for p in range(n_passages)]
    middles = _middle_sentences(rng, places, facts, owner, slot)
    passages = [
        Passage(doc_id, f"{places[o]} ({SECTIONS[s % len(SECTIONS)]})", text)
        for doc_id, o, s, text in zip(
            doc_ids, owner.tolist(), slot.tolist(), _texts(rng, middles), strict=True
        )
    ]
    corpus = Corpus(passages)

    fact_passages = rng.choice(np.flatnonzero(has_fact), size=n_questions, replace=False)
    questions = []
    for i, p in enumerate(fact_passages.tolist()):
        place, relation = places[owner[p]], int(slot[p])
        name, _, template = RELATIONS[relation]
        value = facts[relation][owner[p]]
        questions.append(
            (f"syn-q{i:06d}", template.format(place=place), _answers(name, value), doc_ids[p], name)
        )
    return Task("synthetic", corpus, _split(questions))


def _place_facts(rng: np.random.Generator, n_places: int) -> list[list[str]]:
    """One value per (relation, place), in the order of ``RELATIONS``."""
    cities = [w.capitalize() for w in _invented_words(rng, n_places, syllables=4)]
    coins = _invented_words(rng, n_places, _name_syllables(n_places, "nkt"), "nkt")
    units = rng.choice(CURRENCY_UNITS, size=n_places).tolist()
    peaks = [f"Mount {w.capitalize()}" for w in _invented_words(rng, n_places, syllables=4, coda="h")]
    populations = [f"{n:,}" for n in np.exp(rng.uniform(np.log(5e3), np.log(2e8), n_places)).astype(np.int64)]
    years = rng.integers(1100, 1995, size=n_places).astype(str).tolist()
    return [cities, [f"{c} {u}" for c, u in zip(coins, units, strict=True)], peaks, populations, years]


def _answers(relation: str, value: str) -> tuple[str, ...]:
    if relation == "highest_point":
        return (value, value.removeprefix("Mount "))
    if relation == "population":
        return (value, value.replace(",", ""))
    return (value,)


def _middle_sentences(
    rng: np.random.Generator, places: list[str], facts: list[list[str]], owner: np.ndarray, slot: np.ndarray
) -> list[str]:
    """The sentence planted mid-passage: a fact for a place's first passages, else a mention."""
    content = np.array(COMMON_WORDS[COMMON_WORDS.index("country") :], dtype=object)
    fillers = content[rng.integers(0, len(content), size=(len(owner), 2))].tolist()
    mention_kind = rng.integers(0, len(MENTION_TEMPLATES), size=len(owner)).tolist()
    sentences = []
    for o, s, (w1, w2), m in zip(owner.tolist(), slot.tolist(), fillers, mention_kind, strict=True):
        if s < len(RELATIONS):
            sentences.append(RELATIONS[s][1].format(place=places[o], value=facts[s][o]))
        else:
            sentences.append(MENTION_TEMPLATES[m].format(place=places[o], w1=w1, w2=w2))
    return sentences


def _texts(rng: np.random.Generator, middles: list[str]):  # -> Iterator[str]
    """Filler text around each middle sentence, generated a chunk of passages at a time."""
    words = vocabulary()
    size = len(words)
    # Four spellings per word: plain, "word.", "Word", "Word." -- picked by index arithmetic.
    spellings = np.array(
        words
        + [w + "." for w in words]
        + [w.capitalize() for w in words]
        + [w.capitalize() + "." for w in words],
        dtype=object,
    )
    cdf = _zipf_cdf(size)
    for start in range(0, len(middles), _CHUNK):
        chunk = middles[start : start + _CHUNK]
        lengths = rng.integers(MIN_WORDS, MAX_WORDS + 1, size=len(chunk))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        halves = starts + lengths // 2
        ranks = np.searchsorted(cdf, rng.random(int(ends[-1])))
        period = rng.random(len(ranks)) < SENTENCE_END_PROBABILITY
        period[ends - 1] = True
        period[halves - 1] = True  # the middle sentence starts after a full stop
        capital = np.empty_like(period)
        capital[0] = True
        capital[1:] = period[:-1]
        tokens = spellings[ranks + size * period + 2 * size * capital].tolist()
        for a, h, e, middle in zip(starts.tolist(), halves.tolist(), ends.tolist(), chunk, strict=True):
            yield f"{' '.join(tokens[a:h])} {middle} {' '.join(tokens[h:e])}"


def _split(questions: list[tuple[str, str, tuple[str, ...], str, str]]) -> dict[str, tuple[Question, ...]]:
    """Fixed 80/10/10 split in question order (questions were drawn in random order)."""
    n = len(questions)
    bounds, total = [], 0.0
    for _, share in SPLIT_SHARES:
        total += share
        bounds.append(round(n * total))
    splits: dict[str, tuple[Question, ...]] = {}
    lower = 0
    for (split, _), upper in zip(SPLIT_SHARES, bounds, strict=True):
        splits[split] = tuple(
            Question(qid, text, answers, (gold,), kind=kind, hops=1, split=split)
            for qid, text, answers, gold, kind in questions[lower:upper]
        )
        lower = upper
    return splits


def parse_synthetic_name(name: str) -> int | None:
    """Passage count named by "synthetic" (10k), "synthetic-100k", "synthetic-1m"...; None otherwise.

    >>> parse_synthetic_name("synthetic-100k"), parse_synthetic_name("synthetic"), parse_synthetic_name("x")
    (100000, 10000, None)
    """
    if name == "synthetic":
        return 10_000
    prefix = "synthetic-"
    if not name.startswith(prefix):
        return None
    size = name[len(prefix) :].lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(size[-1:], 1)
    digits = size[:-1] if scale > 1 else size
    if not digits.isdigit():
        raise ValueError(f"bad synthetic task name {name!r}: expected e.g. synthetic-100k or synthetic-1m")
    return int(digits) * scale
