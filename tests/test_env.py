"""The env contract: registration, checker, actions, observations, episode ends, rewards, vector envs."""

from __future__ import annotations

import dataclasses
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from searchenv.env import SearchQAEnv
from searchenv.observations import (
    PassageView,
    is_error,
    parse_hits,
    parse_passage,
    parse_question,
    render_hits,
)
from searchenv.question_ids import opaque_question_id
from searchenv.registration import VARIANTS
from searchenv.snippets import best_snippet, query_words


@pytest.fixture(scope="module")
def env() -> SearchQAEnv:
    return SearchQAEnv(split="test", max_turns=4)


def test_both_spellings_make_the_env() -> None:
    assert isinstance(gym.make("SearchQA-v0").unwrapped, SearchQAEnv)
    assert isinstance(gym.make("searchenv:SearchQA-v0").unwrapped, SearchQAEnv)


@pytest.mark.parametrize("env_id", sorted(VARIANTS))
def test_check_env_passes_without_warnings(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=False)
    assert [str(w.message) for w in caught] == []


def test_reset_is_seeded_by_np_random_only(env: SearchQAEnv) -> None:
    first = [env.reset(seed=7)[1]["question_id"]] + [env.reset()[1]["question_id"] for _ in range(5)]
    second = [env.reset(seed=7)[1]["question_id"]] + [env.reset()[1]["question_id"] for _ in range(5)]
    assert first == second
    assert len(set(first)) > 1


def test_question_id_option_and_unknown_id(env: SearchQAEnv) -> None:
    qid = env.questions[3].qid
    observation, info = env.reset(options={"question_id": qid})
    assert info["question_id"] == opaque_question_id(qid) and env.questions[3].question in observation
    with pytest.raises(ValueError, match="not in the 'test' split"):
        env.reset(options={"question_id": "no-such-question"})


def test_search_read_answer_episode(env: SearchQAEnv) -> None:
    question = next(q for q in env.questions if q.kind == "capital")
    env.reset(options={"question_id": question.qid})
    obs, reward, terminated, truncated, info = env.step({"tool": "search", "query": question.question})
    assert obs.startswith("<information>") and info["hits"] and reward == 0.0
    assert not terminated and not truncated and "answers" not in info
    doc_id = info["hits"][0]["doc_id"]
    obs, *_ = env.step(f"<think>read the top hit</think><read>{doc_id}</read>")
    assert obs.startswith(f"<information>\n[{doc_id}]")
    obs, reward, terminated, truncated, info = env.step(f"<answer>{question.answers[0]}</answer>")
    assert terminated and not truncated and info["correct"]
    assert reward == pytest.approx(
        sum(env.preset.weights[k] * v for k, v in info["reward_breakdown"].items())
    )
    assert info["answers"] == list(question.answers)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("<answer>again</answer>")


def test_observations_parse_back_to_what_the_env_did(env: SearchQAEnv) -> None:
    question = next(q for q in env.questions if q.kind == "capital")
    prompt, _ = env.reset(options={"question_id": question.qid})
    assert parse_question(prompt) == question.question
    obs, _, _, _, info = env.step({"tool": "search", "query": question.question})
    hits = parse_hits(obs)
    assert [(h.doc_id, h.title) for h in hits] == [(h["doc_id"], h["title"]) for h in info["hits"]]
    assert render_hits(hits) == obs and parse_passage(obs) is None
    passage = env.task.corpus[hits[0].doc_id]
    shown = parse_passage(env.step(f"<read>{passage.doc_id}</read>")[0])
    assert shown == PassageView(passage.doc_id, passage.title, passage.text)
    error = env.step("<read>no/such/doc</read>")[0]
    assert is_error(error) and not parse_hits(error)
    assert parse_hits(env.step("<search>zzzqqq</search>")[0]) == []


def test_budget_truncates_and_never_both(env: SearchQAEnv) -> None:
    env.reset(seed=1)
    flags = [env.step("no tags at all")[2:4] for _ in range(env.max_turns)]
    assert flags[:-1] == [(False, False)] * (env.max_turns - 1)
    assert flags[-1] == (False, True)


@pytest.mark.parametrize(
    "action, expected",
    [
        ("", "No complete action tag"),
        ("<search></search>", "is empty"),
        ("<search>unclosed", "No complete action tag"),
        ("<read>../../../etc/passwd</read>", "Unknown doc id"),
        ("<read>/etc/passwd</read>", "Unknown doc id"),
        ("x" * 20_000, "characters long"),
        ({"tool": "search"}, 'needs a "query"'),
        ({"tool": "search", "query": 5}, "must be a string"),
        (12345, "Actions are text or dicts"),
    ],
)
def test_invalid_actions_get_explanations(env: SearchQAEnv, action: object, expected: str) -> None:
    env.reset(seed=2)
    obs, reward, terminated, _, info = env.step(action)
    assert obs.startswith("<error>") and expected in obs
    assert info["tool"] is None and expected in info["error"]
    assert not terminated and reward == 0.0


def test_read_touches_nothing_outside_the_corpus(env: SearchQAEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import io
    import os

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file access during read: {args!r}")

    env.reset(seed=3)
    observations = []
    with monkeypatch.context() as patched:
        for module, name in (
            (builtins, "open"),
            (io, "open"),
            (os, "open"),
            (os, "listdir"),
            (os, "scandir"),
        ):
            patched.setattr(module, name, forbidden)
        for doc_id in ("/etc/passwd", "../../etc/shadow", "~/.ssh/id_rsa", "file:///etc/hosts"):
            observations.append(env.step(f"<read>{doc_id}</read>")[0])
    assert all("Unknown doc id" in obs for obs in observations)


def test_gold_answers_never_leak_before_the_end() -> None:
    """Swap every gold answer and every readable question id for canaries: none may appear until the end.

    Readable ids give answers away (``internet_code/eg`` is answered "eg"); the agent sees an opaque one.
    """
    base = SearchQAEnv(split="test", max_turns=6)
    canary, id_canary = "ZQXJ-canary-7781", "QIDWXYZ-canary-5519"
    questions = {
        split: tuple(dataclasses.replace(q, answers=(canary,), qid=f"{q.qid}/{id_canary}") for q in qs)
        for split, qs in base.task.splits.items()
    }
    task = dataclasses.replace(base.task, splits=questions)
    env = SearchQAEnv(task=task, split="test", max_turns=6)
    rng = np.random.default_rng(0)
    for episode in range(30):
        obs, info = env.reset(seed=episode)
        seen = [obs, repr(info)]
        question = env._by_id[info["question_id"]]
        actions = [
            {"tool": "search", "query": question.question},
            f"<read>{question.supporting_doc_ids[0]}</read>",
            "<read>bogus</read>",
            "garbage",
            {"tool": "search", "query": "answer gold " + canary[: int(rng.integers(1, 5))]},
        ]
        for action in actions:
            obs, _, _, _, info = env.step(action)
            seen += [obs, repr({k: v for k, v in info.items()})]
        assert not any(canary in text or id_canary in text for text in seen)
        obs, _, terminated, _, info = env.step("<answer>x</answer>")
        assert terminated and info["answers"] == [canary] and id_canary not in obs
        assert info["readable_question_id"] == question.qid == info["episode"].question_id
        assert question.qid.endswith(id_canary)


def test_dense_rewards_sum_to_the_terminal_reward() -> None:
    terminal = SearchQAEnv(split="test", max_turns=5, reward_preset="rezero")
    dense = SearchQAEnv(split="test", max_turns=5, reward_preset="rezero", reward_mode="dense")
    script = [
        "<search>capital</search>",
        "oops",
        "<search>capital city name</search>",
        "<answer>Paris</answer>",
    ]
    for seed in range(10):
        totals = []
        for env in (terminal, dense):
            env.reset(seed=seed)
            totals.append(sum(env.step(a)[1] for a in script))
        assert totals[0] == pytest.approx(totals[1], abs=1e-9)


def test_render_ansi_shows_the_transcript() -> None:
    env = gym.make("SearchQA-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step("<search>capital of France</search>")
    text = env.render()
    assert "Question:" in text and ">>> <search>capital of France</search>" in text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode: str) -> None:
    vec = gym.make_vec("SearchQA-v0", num_envs=2, vectorization_mode=mode, max_turns=2)
    try:
        observations, _ = vec.reset(seed=0)
        assert len(observations) == 2 and all("Question:" in o for o in observations)
        for _ in range(3):
            observations, rewards, *_ = vec.step(["<search>capital</search>"] * 2)
        assert rewards.shape == (2,)
    finally:
        vec.close()


def test_a_group_is_envs_reset_with_one_seed() -> None:
    """GRPO groups: envs reset with the same seed ask the same question."""
    vec = gym.make_vec("SearchQA-v0", num_envs=4, vectorization_mode="sync", max_turns=1)
    try:
        _, infos = vec.reset(seed=[11, 11, 12, 12])
        ids = list(infos["question_id"])
        assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    finally:
        vec.close()


def _reference_snippet(text: str, words: frozenset[str], max_chars: int) -> str:
    """The plain definition best_snippet must match: the earliest clause with the most query words."""
    if len(text) <= max_chars:
        return text
    bounds = [0] + [m.end() for m in re.finditer(r"(?<=[.;])\s+|\n+", text)]
    ends = [m.start() for m in re.finditer(r"(?<=[.;])\s+|\n+", text)] + [len(text)]
    overlaps = [len(words & set(re.findall(r"\w+", text[a:b].lower()))) for a, b in zip(bounds, ends)]
    start = bounds[overlaps.index(max(overlaps))] if max(overlaps) else 0
    window = text[start : start + max_chars].strip()
    return ("… " if start else "") + window + (" …" if start + max_chars < len(text) else "")


def test_snippets_start_at_the_earliest_clause_with_most_query_words(env: SearchQAEnv) -> None:
    rng = np.random.default_rng(0)
    vocab = ["capital", "paris", "the", "of", "area", "km", "name", "é"]
    texts = [p.text for p in list(env.task.corpus.passages())[:300]]
    for _ in range(300):
        clauses = [" ".join(rng.choice(vocab, size=rng.integers(0, 6))) for _ in range(rng.integers(1, 70))]
        texts.append("".join(c + str(rng.choice([". ", "; ", "\n", ".\n\n"])) for c in clauses))
    for text in texts:
        words = query_words(" ".join(rng.choice(vocab, size=rng.integers(0, 5))))
        for max_chars in (20, 60, 300):
            assert best_snippet(text, words, max_chars) == _reference_snippet(text, words, max_chars)
