"""Reward components and presets: hand-computed values, malformed input, dense telescoping,
and component-level reward-hacking checks."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchenv.episode import EpisodeRecord, Turn
from searchenv.rewards import (
    COMPONENT_NAMES,
    PRESETS,
    RewardPreset,
    correctness,
    dense_increments,
    diversity,
    episode_reward,
    evidence,
    exact_match,
    format_score,
    get_preset,
    normalize_answer,
    normalize_query,
    query_similarity,
    retry,
    reward_breakdown,
    token_f1,
    total_reward,
)
from tasks.records import Question

QUESTION = Question(
    qid="q1",
    question="What is the capital of France?",
    answers=("Paris", "City of Light"),
    supporting_doc_ids=("france-0", "france-1"),
)
COMPONENTS = (correctness, format_score, retry, evidence, diversity)


def search(query: str, hits: tuple[str, ...] = (), tags: int = 1) -> Turn:
    return Turn(
        raw=f"<search>{query}</search>", tool="search", argument=query, search_tags=tags, hit_doc_ids=hits
    )


def read(doc_id: str) -> Turn:
    # A read turn that (hypothetically) reports the doc it opened among its hits.
    return Turn(raw=f"<read>{doc_id}</read>", tool="read", argument=doc_id, hit_doc_ids=(doc_id,))


def invalid(raw: str = "I think I'll just chat", tags: int = 0) -> Turn:
    return Turn(raw=raw, tool=None, error="no action tag found", search_tags=tags)


def answer(text: str) -> Turn:
    return Turn(raw=f"<answer>{text}</answer>", tool="answer", argument=text)


def episode(*turns: Turn, question: Question = QUESTION) -> EpisodeRecord:
    return EpisodeRecord(question, tuple(turns))


# --- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   Tale of Two Cities ", "tale of two cities"),
        ("Réunion", "reunion"),
        ("Curaçao", "curacao"),
        ("Hà Nội", "ha noi"),
        ("ＰＡＲＩＳ", "paris"),  # full-width letters, folded by NFKD
        ("1,000 km²", "1000 km2"),
        ("Guinea-Bissau", "guineabissau"),  # SQuAD deletes punctuation rather than spacing it
        ("«Quoted» — text…", "quoted text"),
        ("Theater", "theater"),  # "the" is dropped only as a whole token
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_answer_keeps_script_specific_marks() -> None:
    # Devanagari vowel signs are letters: stripping them would make "kul" equal "kal".
    assert normalize_answer("कुल") != normalize_answer("कल")
    with pytest.raises(TypeError):
        normalize_answer(None)  # type: ignore[arg-type]


def test_tasks_and_rewards_share_one_answer_normalization() -> None:
    # Tasks dedupe answers and check gold passages with the normalization rewards grade with, so
    # an answer a task lists as distinct is never graded as equal to another, and vice versa.
    from tasks import factbook, text
    from tasks.factbook.source import with_folded

    assert normalize_answer is text.normalize_answer is factbook.normalize_answer
    assert normalize_answer("Straße") == normalize_answer("STRASSE") == "strasse"  # case folding
    assert exact_match("STRASSE", "Straße") and exact_match("Straße", "strasse")
    assert text.contains_answer("Die Hauptstraße, Berlin", "HAUPTSTRASSE")
    assert with_folded(["Straße", "STRASSE", "Strasse"]) == ("Straße",)  # one answer, one form


def test_token_f1_hand_values() -> None:
    assert token_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("paris paris", "Paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("Lyon", "Paris") == 0.0
    with pytest.raises(ValueError, match="empty after normalization"):
        token_f1("anything", "The")


def test_normalize_query_and_similarity() -> None:
    assert normalize_query("  What's the Capital of FRANCE?? ") == ("what s the capital of france", ())
    assert normalize_query('"eiffel tower" height filetype:PDF') == (
        "height",
        ('"eiffel tower"', "filetype:pdf"),
    )
    assert query_similarity("capital of france", "Capital of France!") == 1.0
    # Two differing operators: factor max(0.3, 1 - 0.4) = 0.6.
    assert query_similarity("capital site:a.org", "capital site:b.org") == pytest.approx(0.6)
    # Five differing operators hit the 0.3 floor.
    assert query_similarity("x -a -b -c -d -e", "x") == pytest.approx(0.3)


# --- correctness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "em", "f1", "cover"),
    [
        ("Paris", 1.0, 1.0, 1.0),
        ("paris.", 1.0, 1.0, 1.0),
        ("The City of Light", 1.0, 1.0, 1.0),  # second gold, article dropped
        ("Paris, France", 0.0, 2 / 3, 1.0),
        ("Lyon", 0.0, 0.0, 0.0),
        ("Parisian", 0.0, 0.0, 0.0),  # cover_em works on token boundaries
    ],
)
def test_correctness_variants(text: str, em: float, f1: float, cover: float) -> None:
    record = episode(search("capital of france"), answer(text))
    assert correctness(record, "em") == em
    assert correctness(record, "f1") == pytest.approx(f1)
    assert correctness(record, "cover_em") == cover


def test_correctness_accents_and_best_gold() -> None:
    question = replace(QUESTION, answers=("Réunion",))
    assert correctness(episode(answer("reunion"), question=question)) == 1.0
    question = replace(QUESTION, answers=("United States", "U.S.A."))
    assert correctness(episode(answer("usa"), question=question)) == 1.0


def test_correctness_without_answer_is_zero() -> None:
    unanswered = episode(search("capital of france"), invalid("<answer>Paris"))
    for variant in ("em", "f1", "cover_em"):
        assert correctness(unanswered, variant) == 0.0
    assert correctness(unanswered, judge=lambda *_: pytest.fail("judge called without an answer")) == 0.0


def test_candidate_list_answer_is_why_cover_em_is_not_a_default() -> None:
    hedged = episode(search("capital of france"), answer("Lyon, Marseille, Paris or Nice"))
    assert correctness(hedged, "em") == 0.0
    assert correctness(hedged, "cover_em") == 1.0
    assert correctness(hedged, "f1") == pytest.approx(2 * 0.2 * 1 / 1.2)
    assert all(preset.correctness_variant != "cover_em" for preset in PRESETS.values())


def test_judge_replaces_string_match_and_is_range_checked() -> None:
    record = episode(answer("the French capital"))
    calls: list[tuple[str, str, tuple[str, ...]]] = []

    def judge(question: str, text: str, golds: tuple[str, ...]) -> float:
        calls.append((question, text, golds))
        return 0.75

    assert correctness(record, judge=judge) == 0.75
    assert calls == [(QUESTION.question, "the French capital", QUESTION.answers)]
    assert correctness(record, judge=lambda *_: True) == 1.0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="outside"):
            correctness(record, judge=lambda *_, bad=bad: bad)
    with pytest.raises(TypeError):
        correctness(record, judge=lambda *_: "yes")
    with pytest.raises(TypeError):
        correctness(record, judge="not callable")  # type: ignore[arg-type]


def test_correctness_rejects_bad_variant_and_bad_gold() -> None:
    record = episode(answer("Paris"))
    with pytest.raises(ValueError, match="variant"):
        correctness(record, "exact")
    with pytest.raises(ValueError, match="empty after normalization"):
        correctness(episode(answer("a"), question=replace(QUESTION, answers=("The",))))


# --- format, retry, evidence -----------------------------------------------------------------


def test_format_score() -> None:
    assert format_score(episode(invalid(), search("q"), answer("Paris"))) == pytest.approx(2 / 3)
    assert format_score(episode(answer("Paris"))) == 1.0
    assert format_score(episode(search("q"), search("r"))) == 0.0  # no answer
    assert format_score(episode()) == 0.0


@pytest.mark.parametrize(("searches", "expected"), [(0, 0.0), (1, 0.35), (3, 0.65), (5, 0.95), (7, 0.95)])
def test_retry_counts_searches(searches: int, expected: float) -> None:
    turns = [search(f"query number {i}") for i in range(searches)]
    assert retry(episode(*turns, answer("Paris"))) == expected
    assert retry(episode(*turns, answer("Paris")), strict=True) == expected  # all distinct
    assert retry(episode(*turns)) == 0.0  # no answer, no persistence reward


def test_retry_halves_when_a_turn_holds_two_searches() -> None:
    record = episode(search("a", tags=2), search("b"), answer("Paris"))
    assert retry(record) == 0.325  # n = 3 tags: 0.65 * 0.5
    assert retry(record, strict=True) == 0.25  # n = 2 distinct executed queries: 0.5 * 0.5


def test_retry_counts_tags_of_invalid_turns_unless_strict() -> None:
    record = episode(invalid("<search></search>", tags=1), search("capital"), answer("Paris"))
    assert retry(record) == 0.5  # ReZero counts the empty search tag
    assert retry(record, strict=True) == 0.35


def test_strict_retry_ignores_repeats_and_trivial_variants() -> None:
    repeated = episode(*(search("capital of France") for _ in range(5)), answer("Paris"))
    assert retry(repeated) == 0.95
    assert retry(repeated, strict=True) == 0.35
    variants = episode(search("Capital of France?"), search("capital  of france"), answer("Paris"))
    assert retry(variants, strict=True) == 0.35
    quoted = episode(search('"capital of france"'), search("capital of france"), answer("Paris"))
    assert retry(quoted, strict=True) == 0.35  # BM25 sees the same words
    punctuation_only = episode(search("???"), answer("Paris"))
    assert retry(punctuation_only, strict=True) == 0.0


def test_evidence() -> None:
    assert evidence(episode(search("q", hits=("x", "france-1")), answer("Paris"))) == 1.0
    assert evidence(episode(search("q", hits=("x", "y")), answer("Paris"))) == 0.0
    # Not gated on the answer: the evidence was found either way.
    assert evidence(episode(search("q", hits=("france-0",)))) == 1.0
    # Reading a guessed id is not finding it by search.
    assert evidence(episode(read("france-0"), answer("Paris"))) == 0.0
    # A task without gold documents cannot earn this component.
    no_gold = replace(QUESTION, supporting_doc_ids=())
    assert evidence(episode(search("q", hits=("france-0",)), question=no_gold)) == 0.0


# --- diversity -------------------------------------------------------------------------------


def _queries(*queries: str) -> EpisodeRecord:
    return episode(*(search(query) for query in queries), answer("Paris"))


def test_diversity_hand_values() -> None:
    assert diversity(_queries()) == 0.0
    assert diversity(_queries("capital of france")) == 0.2
    # Duplicate: base 0.2 + spread 0 - 0.2 duplicate = 0.
    assert diversity(_queries("capital of france", "Capital of France?")) == 0.0
    # Disjoint characters: ratio 0, base 0.4 + spread 0.4.
    assert diversity(_queries("abc", "xyz")) == pytest.approx(0.8)
    # Near duplicate (ratio 34/35) plus an unrelated query: one similar pair (-0.1).
    expected = 0.4 + 0.4 * (1 - (34 / 35) / 3) - 0.1
    assert diversity(_queries("capital of france", "capital of frances", "zzz")) == pytest.approx(expected)
    # One operator: bonus min(0.15, 0.05) + 0.05 * 1/2; with the bonus off it is plain 0.8.
    assert diversity(_queries("abc site:x.org", "xyz")) == pytest.approx(0.875)
    assert diversity(_queries("abc site:x.org", "xyz"), reward_operators=False) == pytest.approx(0.8)


def test_diversity_similar_pair_penalty_halves_with_two_operators() -> None:
    record = _queries("capital of france site:a.org", "capital of frances -europe", "zzz")
    mean_similarity = (34 / 35) * 0.6 / 3  # the near pair differs by 2 operators: factor 0.6
    operator_bonus = 0.1 + 0.05 * 2 / 3
    expected = 0.4 + 0.4 * (1 - mean_similarity) + operator_bonus - 0.1 * 0.5
    assert diversity(record) == pytest.approx(expected)


def test_diversity_counts_only_executed_queries() -> None:
    record = episode(search("abc"), invalid("<search>xyz</search> <search>", tags=1), answer("Paris"))
    assert diversity(record) == 0.2


def test_diversity_quoted_only_queries_count_as_duplicates_like_rezero() -> None:
    # Both bases are empty: one duplicate (-0.2); similarity 1 * factor 0.6; two operators.
    record = _queries('"capital of france"', '"currency of peru"')
    assert diversity(record) == pytest.approx(0.2 + 0.4 * 0.4 + 0.15 - 0.2)


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_reject_non_records(component) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        component("not a record")
    with pytest.raises(TypeError):
        component(EpisodeRecord("not a question", ()))  # type: ignore[arg-type]


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_reject_malformed_records(component) -> None:  # type: ignore[no-untyped-def]
    no_answers = replace(QUESTION)
    object.__setattr__(no_answers, "answers", ())  # Question's own check forbids this
    with pytest.raises(ValueError, match="no gold answers"):
        component(episode(answer("Paris"), question=no_answers))
    with pytest.raises(ValueError, match="followed by"):
        component(episode(answer("Paris"), search("more")))
    with pytest.raises(ValueError, match="search_tags"):
        component(episode(Turn(raw="", tool="search", argument="q", search_tags=-1), answer("Paris")))
    with pytest.raises(ValueError, match="unknown tool"):
        component(episode(Turn(raw="", tool="browse", argument="q"), answer("Paris")))
    with pytest.raises(TypeError):
        component(episode("<search>q</search>", answer("Paris")))  # type: ignore[arg-type]


# --- presets ---------------------------------------------------------------------------------


def test_presets() -> None:
    assert set(PRESETS) == {"rezero", "rezero-strict", "rezero-no-retry", "em", "f1"}
    assert "retry" not in PRESETS["rezero-no-retry"].weights
    rezero = get_preset("rezero")
    assert dict(rezero.weights) == {"correctness": 4, "format": 2, "retry": 1, "evidence": 1, "diversity": 1}
    assert rezero.max_total == 9.0 and not rezero.strict_retry
    strict = get_preset("rezero-strict")
    assert strict.weights == rezero.weights and strict.strict_retry
    assert get_preset("f1").correctness_variant == "f1" and dict(get_preset("em").weights) == {
        "correctness": 1
    }
    assert get_preset(strict) is strict
    assert pickle.loads(pickle.dumps(strict)) == strict
    assert len({strict, pickle.loads(pickle.dumps(strict)), rezero}) == 2


def test_get_preset_errors() -> None:
    with pytest.raises(ValueError, match="em, f1, rezero, rezero-no-retry, rezero-strict"):
        get_preset("rezero_strict")
    with pytest.raises(TypeError):
        get_preset(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        ({"speed": 1.0}, ValueError),
        ({"correctness": -1.0}, ValueError),
        ({"correctness": math.inf}, ValueError),
        ({"correctness": math.nan}, ValueError),
        ({"correctness": True}, TypeError),
        ({"correctness": "1"}, TypeError),
        ({}, ValueError),
        ({"correctness": 0.0}, ValueError),
        ([("correctness", 1.0)], TypeError),
    ],
)
def test_custom_preset_validation(weights: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        RewardPreset("custom", weights)  # type: ignore[arg-type]


def test_custom_preset_copies_weights() -> None:
    weights = {"correctness": 1.0, "retry": 0.5}
    preset = get_preset(weights)
    weights["retry"] = 100.0
    assert preset.weights["retry"] == 0.5
    with pytest.raises(ValueError, match="variant"):
        RewardPreset("x", {"correctness": 1.0}, correctness_variant="bleu")


def test_breakdown_and_total() -> None:
    record = episode(
        invalid(),
        search("capital of france", hits=("france-0",)),
        search("paris population"),
        answer("Paris"),
    )
    breakdown = reward_breakdown(record, "rezero")
    assert tuple(breakdown) == COMPONENT_NAMES
    assert breakdown["correctness"] == 1.0 and breakdown["format"] == 0.75
    assert breakdown["retry"] == 0.5 and breakdown["evidence"] == 1.0
    assert 0.0 < breakdown["diversity"] <= 1.0
    expected = 4 * 1.0 + 2 * 0.75 + 0.5 + 1.0 + breakdown["diversity"]
    assert total_reward(breakdown, "rezero") == pytest.approx(expected)
    assert total_reward(breakdown, "em") == 1.0
    with pytest.raises(ValueError, match="lacks"):
        total_reward({"correctness": 1.0}, "rezero")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        total_reward({"correctness": 2.0}, "em")
    judged = reward_breakdown(record, "f1", judge=lambda *_: 0.25)
    assert judged["correctness"] == 0.25


def test_dense_increments_example() -> None:
    record = episode(search("abc", hits=("france-0",)), search("abc"), answer("Paris"))
    increments = dense_increments(record, "rezero-strict")
    # Turn 1: evidence 1 + diversity 0.2. Turn 2: duplicate drops diversity to 0.
    assert increments[0] == pytest.approx(1.2)
    assert increments[1] == pytest.approx(-0.2)
    assert increments[2] == pytest.approx(4 + 2 + 0.35)
    assert sum(increments) == pytest.approx(episode_reward(record, "rezero-strict"))
    assert dense_increments(episode(), "rezero") == []


WORDS = ("capital", "france", "paris", "currency", "peru", "the", "of", "highest", "point")
OPERATORS = ("", " site:cia.gov", ' "world factbook"', " -europe", " OR ")

query_text = st.builds(
    lambda words, operator: " ".join(words) + operator,
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=4),
    st.sampled_from(OPERATORS),
)
doc_ids = st.lists(st.sampled_from(("france-0", "france-1", "peru-0", "x")), max_size=3, unique=True)
middle_turn = st.one_of(
    st.builds(lambda q, hits, tags: search(q, tuple(hits), tags), query_text, doc_ids, st.integers(1, 3)),
    st.builds(read, st.sampled_from(("france-0", "peru-0"))),
    st.builds(lambda tags: invalid("garbled", tags), st.integers(0, 2)),
)
final_turn = st.one_of(st.none(), st.builds(answer, st.sampled_from(("Paris", "paris, france", "Lima", "?"))))
records = st.builds(
    lambda middle, last: episode(*middle, *([last] if last is not None else [])),
    st.lists(middle_turn, max_size=8),
    final_turn,
)


@settings(max_examples=80, deadline=None)
@given(record=records, preset_name=st.sampled_from(sorted(PRESETS)))
def test_dense_increments_sum_to_terminal_total(record: EpisodeRecord, preset_name: str) -> None:
    increments = dense_increments(record, preset_name)
    assert len(increments) == len(record.turns)
    assert abs(sum(increments) - episode_reward(record, preset_name)) < 1e-9
    breakdown = reward_breakdown(record, preset_name)
    assert all(0.0 <= value <= 1.0 for value in breakdown.values())


# --- reward hacking at the component level ---------------------------------------------------


def test_repeating_one_query_earns_less_than_two_distinct_under_rezero_strict() -> None:
    repeater = episode(*(search("capital of france") for _ in range(5)), answer("Paris"))
    honest = episode(search("capital of france"), search("paris city of light"), answer("Paris"))
    preset = get_preset("rezero-strict")

    def persistence(record: EpisodeRecord) -> float:
        breakdown = reward_breakdown(record, preset)
        return breakdown["retry"] + breakdown["diversity"]

    assert persistence(repeater) == pytest.approx(0.35)  # strict retry 0.35, diversity clipped to 0
    assert persistence(repeater) < persistence(honest)
    assert episode_reward(repeater, preset) < episode_reward(honest, preset)
    # Plain ReZero pays the repeater 0.95 retry: why the env defaults to rezero-strict.
    assert reward_breakdown(repeater, "rezero")["retry"] == 0.95


def test_search_spam_with_a_wrong_answer_loses_to_an_honest_correct_answer() -> None:
    spam_queries = ("paris", "currency peru", "highest point", "the world", "factbook site:cia.gov")
    spammer = episode(*(search(q, hits=("france-0",)) for q in spam_queries), answer("Lyon"))
    honest = episode(search("capital of france", hits=("france-0",)), answer("Paris"))
    for name in PRESETS:
        assert episode_reward(spammer, name) < episode_reward(honest, name), name


def test_candidate_list_earns_nothing_under_any_preset_correctness() -> None:
    hedged = episode(search("capital of france"), answer("Paris, Lyon, Marseille, Nice"))
    assert reward_breakdown(hedged, "em")["correctness"] == 0.0
    assert reward_breakdown(hedged, "rezero-strict")["correctness"] == 0.0
    assert reward_breakdown(hedged, "f1")["correctness"] == pytest.approx(0.4)
