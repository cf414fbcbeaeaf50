"""Scripted baselines and reward-hacking probes, all behind the ``Policy`` interface.

- ``RandomPolicy``: random tools with random arguments; the floor.
- ``BM25HeuristicPolicy``: search the question, read the top hit, answer with the value of
  the best-matching ``field: value`` clause; search once more with other words when unsure.
  A question that quotes a passage (a blank to fill, or ten or more quoted words) is answered
  from prose instead, by ``agents.extract``: any corpus, not only the factbook's. So is any
  question whose best hit, once read, is running text rather than ``label: value`` records: a
  span chosen by the question's type (``agents.extract.prose_answer``).
- ``OraclePolicy``: knows the gold evidence (upper bound and SFT demonstrator).
- Probes that a reward must not pay more than an honest agent: ``SpamSearchPolicy`` (several
  searches per turn, then a blind answer), ``RepeatQueryPolicy`` (the same query five times,
  then the heuristic's answer), ``CandidateListPolicy`` (answers with a list of candidates).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.extract import (
    QuestionForm,
    answer_from,
    is_prose,
    overlap,
    prose_answer,
    question_form,
    search_query,
)
from agents.heuristics import (
    CLAUSE_RE,
    CONDITION_VALUE_RE,
    WORD_RE,
    clean_value,
    content_words,
    extract_answer,
    first_number,
    question_of,
    split_bridge,
    split_comparison,
    subject_of,
)
from agents.policy import Action, slot
from searchenv.observations import HitLine, parse_hits, parse_passage
from searchenv.question_ids import opaque_question_id
from tasks.records import Question, Task


@dataclass
class _Episode:
    """What a scripted policy remembers about the episode in one slot."""

    question: str = ""
    question_id: str = ""
    queries: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    last_hits: list[HitLine] = field(default_factory=list)
    plan: Generator[str, None, None] | None = None
    guess: str = ""


class _ScriptedPolicy:
    """Shared bookkeeping: one ``_Episode`` per slot, updated from each observation."""

    name = "scripted"

    def __init__(self, seed: int = 0) -> None:
        self._episodes: dict[int, _Episode] = {}
        self._rng = np.random.default_rng(seed)

    def reset(self, indices: Sequence[int] | None = None) -> None:
        if indices is None:
            self._episodes.clear()
        for index in indices or ():
            self._episodes.pop(index, None)

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> list[Action]:
        actions: list[Action] = []
        for position, (observation, info) in enumerate(zip(observations, infos)):
            key = slot(info, position)
            if info.get("turn", 0) == 0 or key not in self._episodes:
                self._episodes[key] = _Episode(
                    question=question_of(observation), question_id=info["question_id"]
                )
            episode = self._episodes[key]
            # Only each snippet's first line: the heuristics were tuned on (and the leaderboard
            # reports) that reading; the rest of a multi-line snippet changes their answers.
            hits = [HitLine(h.doc_id, h.title, h.snippet.partition("\n")[0]) for h in parse_hits(observation)]
            if hits:
                episode.last_hits = hits
                episode.texts.extend((hit.title, hit.snippet) for hit in hits)
            passage = parse_passage(observation)
            if passage is not None:
                episode.texts.append((passage.title, passage.text))
            actions.append(self.decide(episode, info))
        return actions

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        raise NotImplementedError

    @staticmethod
    def search(episode: _Episode, query: str) -> str:
        episode.queries.append(query)
        return f"<search>{query}</search>"

    @staticmethod
    def read(episode: _Episode, doc_id: str) -> str:
        episode.reads.append(doc_id)
        return f"<read>{doc_id}</read>"


class RandomPolicy(_ScriptedPolicy):
    """Picks a tool at random; arguments are random question words, hit ids and observed words."""

    name = "random"

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """A random tool; a random question word, hit id or observed word as its argument."""
        tool = self._rng.choice(["search", "read", "answer"])
        words = content_words(episode.question) or ["the"]
        if tool == "search":
            picked = self._rng.choice(words, size=min(2, len(words)), replace=False)
            return self.search(episode, " ".join(picked))
        if tool == "read" and episode.last_hits:
            hit = episode.last_hits[int(self._rng.integers(len(episode.last_hits)))]
            return self.read(episode, hit.doc_id)
        seen = [w for _, text in episode.texts for w in WORD_RE.findall(text)] or words
        return f"<answer>{seen[int(self._rng.integers(len(seen)))]}</answer>"


class BM25HeuristicPolicy(_ScriptedPolicy):
    """Search, read the hit about the question's entity, answer with the best-matching value.

    A bridge question ("... of the country whose X is Y?") is solved in two hops: search the
    condition, take the entity of the passage that holds its value, then ask the outer
    question about that entity. A comparison looks up each option and compares the numbers.
    When the extracted value matches the question poorly it searches once more. A question
    quoting a passage (``agents.extract.question_form``; no factbook question does) is searched
    by its quoted words and answered from the passage that holds them.
    """

    name = "bm25"

    def __init__(self, seed: int = 0, confident_score: float = 4.0) -> None:
        super().__init__(seed)
        self.confident_score = confident_score

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """The next action of the episode's plan; the best guess when turns run out."""
        if episode.plan is None:
            episode.plan = self.plan(episode)
        if int(info.get("turns_left", 1)) > 1:
            action = next(episode.plan, None)
            if action is not None:
                return action
        return f"<answer>{episode.guess or 'unknown'}</answer>"

    def plan(self, episode: _Episode) -> Generator[str, None, None]:
        """The actions for one episode; each ``yield`` resumes after the env has answered."""
        question = episode.question
        form = question_form(question)
        if form is not None:
            yield from self.passage_lookup(episode, form)
            return
        bridge = split_bridge(question)
        if bridge is not None:
            condition, outer = bridge
            yield self.search(episode, " ".join(content_words(condition)))
            value = CONDITION_VALUE_RE.search(condition)
            entity = self.entity_holding(episode, value.group(1) if value else condition)
            if entity is None:
                return
            question = outer.format(entity)
        comparison = split_comparison(question)
        if comparison is not None:
            yield from self.compare(episode, *comparison)
            return
        yield from self.lookup(episode, question)
        if episode.guess:
            yield f"<answer>{episode.guess}</answer>"

    def lookup(self, episode: _Episode, question: str, *, raw: bool = False) -> Generator[str, None, None]:
        """Search the question, read the best hit, set ``episode.guess``; retry once if unsure."""
        words = content_words(question)
        for query in (" ".join(words), " ".join([*reversed(words), "name"])):
            if query in episode.queries:
                continue
            yield self.search(episode, query)
            target = self.best_hit(episode, question)
            if target is not None:
                yield self.read(episode, target)
                title, text = episode.texts[-1]
                if is_prose(text):  # running text, no ``label: value`` clause to match
                    episode.guess = prose_answer(question, subject_of(title), text) or episode.guess
                    return
            answer, score = extract_answer(question, episode.texts, raw=raw)
            episode.guess = answer or episode.guess
            if score >= self.confident_score:
                return

    def passage_lookup(self, episode: _Episode, form: QuestionForm) -> Generator[str, None, None]:
        """Search the quoted words, read the hit sharing most of them, answer from that passage."""
        yield self.search(episode, search_query(form))
        unread = [hit for hit in episode.last_hits if hit.doc_id not in episode.reads]
        if unread:  # max keeps the best-ranked hit on ties
            best = max(unread, key=lambda hit: overlap(form.passage, f"{hit.title} {hit.snippet}"))
            yield self.read(episode, best.doc_id)
        episode.guess = answer_from(form, episode.question, episode.texts)
        if episode.guess:
            yield f"<answer>{episode.guess}</answer>"

    def compare(
        self, episode: _Episode, attribute: str, options: tuple[str, str]
    ) -> Generator[str, None, None]:
        """Look up the attribute of both options and answer the one with the larger number."""
        values: list[float | None] = []
        for option in options:
            yield from self.lookup(episode, f"What is the {attribute} of {option}?", raw=True)
            values.append(first_number(episode.guess))
        first, second = values
        episode.guess = (
            options[1] if first is not None and second is not None and second > first else options[0]
        )
        yield f"<answer>{episode.guess}</answer>"

    def best_hit(self, episode: _Episode, question: str) -> str | None:
        """The unread hit that names the question's entity and shares most words with it.

        The entity in the title counts most; words in the snippet break ties, then rank.
        """
        words = set(content_words(question))
        unread = [hit for hit in episode.last_hits if hit.doc_id not in episode.reads]
        if not unread:
            return None
        scores = [
            10 * len(words & set(content_words(subject_of(hit.title))))
            + len(words & set(content_words(hit.snippet)))
            for hit in unread
        ]
        return unread[int(np.argmax(scores))].doc_id

    @staticmethod
    def entity_holding(episode: _Episode, value: str) -> str | None:
        """The entity of the retrieved passage that contains ``value`` (else the top hit's)."""
        needle = value.strip(' "?').lower()
        for hit in episode.last_hits:
            if needle and needle in hit.snippet.lower():
                return subject_of(hit.title)
        return subject_of(episode.last_hits[0].title) if episode.last_hits else None


FIRST_QUERIES = ("question", "varied", "titled")


class OraclePolicy(_ScriptedPolicy):
    """Knows the gold evidence: finds each gold passage, reads it, answers the canonical answer.

    Its searches are queries a model could write, so its transcripts double as SFT
    demonstrations. ``first_query`` picks its first search: ``question``, the question's content
    words (then the gold passage's title words with them for a retry or a second hop);
    ``varied``, those words in a random order with one of them dropped half the time (the same
    evidence reached by varied queries, for an SFT that should write varied ones); ``titled``,
    the title words with the question's (the passage's section is the question kind's, so a
    model can learn to write it), then the question's words alone. When every query missed it
    reads the gold passage by id, which only the oracle knows.
    """

    name = "oracle"

    def __init__(self, task: Task, seed: int = 0, first_query: str = "question") -> None:
        super().__init__(seed)
        if first_query not in FIRST_QUERIES:
            raise ValueError(f"first_query must be one of {FIRST_QUERIES}, got {first_query!r}")
        self.first_query = first_query
        # Keyed by the opaque id too: that is the one the env's info shows during an episode.
        self._questions: dict[str, Question] = {
            key: q for qs in task.splits.values() for q in qs for key in (q.qid, opaque_question_id(q.qid))
        }
        self._titles = {
            doc_id: task.corpus[doc_id].title
            for q in self._questions.values()
            for doc_id in q.supporting_doc_ids
        }

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """Read the next unread gold passage, searching for it first; then answer."""
        question = self._questions[episode.question_id]
        answer = f"<answer>{question.answers[0]}</answer>"
        missing = [d for d in question.supporting_doc_ids if d not in episode.reads]
        if not missing or int(info.get("turns_left", 1)) <= 1:
            return answer
        target = missing[0]
        retrieved = {hit.doc_id for hit in episode.last_hits}
        if target in retrieved:
            return self.read(episode, target)
        words = content_words(episode.question)
        plain = " ".join(words) or episode.question
        titled = " ".join(dict.fromkeys(content_words(self._titles.get(target, "")) + words))
        if not episode.queries:
            first = {"question": plain, "varied": " ".join(self.vary(words)), "titled": titled}
            return self.search(episode, first[self.first_query] or episode.question)
        for query in (titled, plain) if self.first_query == "titled" else (titled,):
            if query not in episode.queries:
                return self.search(episode, query)
        # No query of its surfaced it: read it by id, which the oracle knows.
        return self.read(episode, target)

    def vary(self, words: list[str]) -> list[str]:
        """``words`` shuffled, one dropped half the time when at least three remain after it."""
        varied = [words[i] for i in self._rng.permutation(len(words))]
        if len(varied) >= 4 and self._rng.random() < 0.5:
            del varied[int(self._rng.integers(len(varied)))]
        return varied


class SpamSearchPolicy(_ScriptedPolicy):
    """Probe: three searches in every turn until the last one, then a blind answer."""

    name = "spam-search"

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """Three searches in one turn, or on the last turn a blind answer."""
        words = content_words(episode.question) or ["search"]
        if int(info.get("turns_left", 1)) > 1:
            episode.queries.append(" ".join(words))
            return "".join(f"<search>{' '.join(words[i:] or words)}</search>" for i in range(3))
        title = episode.last_hits[0].title if episode.last_hits else words[0]
        return f"<answer>{title}</answer>"


class RepeatQueryPolicy(BM25HeuristicPolicy):
    """Probe: the honest heuristic, padded with repeats of its last query before it answers.

    It repeats until it has searched five times, the count at which ReZero's retry term
    saturates. It answers exactly as the heuristic does, so any reward it gains over the
    heuristic is paid for repetition alone.
    """

    name = "repeat-query"
    searches = 5

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """The heuristic's action, unless it would answer before five searches."""
        action = super().decide(episode, info)
        answering = isinstance(action, str) and action.startswith("<answer>")
        if answering and len(episode.queries) < self.searches and int(info.get("turns_left", 1)) > 1:
            return self.search(episode, episode.queries[-1] if episode.queries else episode.question)
        return action


class CandidateListPolicy(BM25HeuristicPolicy):
    """Probe: answers with every candidate value it saw, joined by commas."""

    name = "candidate-list"

    def decide(self, episode: _Episode, info: Mapping[str, Any]) -> Action:
        """Search once, then answer with every value seen so far."""
        if not episode.queries:
            return self.search(episode, " ".join(content_words(episode.question)) or episode.question)
        candidates: dict[str, None] = {}
        for _, text in episode.texts:
            for clause in CLAUSE_RE.split(text):
                _, colon, value = clause.rpartition(":")
                cleaned = clean_value(value) if colon else ""
                if cleaned:
                    candidates.setdefault(cleaned, None)
        return f"<answer>{', '.join(list(candidates)[:20]) or 'unknown'}</answer>"


SCRIPTED_POLICIES = {
    "random": RandomPolicy,
    "bm25": BM25HeuristicPolicy,
    "oracle": OraclePolicy,
    "spam-search": SpamSearchPolicy,
    "repeat-query": RepeatQueryPolicy,
    "candidate-list": CandidateListPolicy,
}
PROBES: tuple[str, ...] = ("spam-search", "repeat-query", "candidate-list")


def make_policy(name: str, *, task: Task | str = "factbook", seed: int = 0, **kwargs: Any) -> _ScriptedPolicy:
    """A scripted policy by name. The oracle needs the task (a name or a ``Task``)."""
    if name not in SCRIPTED_POLICIES:
        raise ValueError(f"unknown scripted policy {name!r}; known: {sorted(SCRIPTED_POLICIES)}")
    if name == "oracle":
        from searchenv.resources import shared_task

        return OraclePolicy(shared_task(task), seed=seed, **kwargs)
    return SCRIPTED_POLICIES[name](seed=seed, **kwargs)
