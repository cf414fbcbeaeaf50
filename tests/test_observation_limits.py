"""Every observation fits the observation space, and every cut says so.

A corpus built to overflow: a 150,000-character passage, 20,000-character titles, a 400-character
doc id with a 70,000-character title, a 70,000-character question. Single envs, async vector envs
(whose shared memory holds exactly ``MAX_OBSERVATION_CHARS`` per env) and a property over random
actions and env settings.
"""

from __future__ import annotations

import re

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchenv.env import SearchQAEnv
from searchenv.observations import (
    MAX_OBSERVATION_CHARS,
    PROMPT_TEMPLATE,
    parse_question,
    render_error,
    render_hits,
    render_passage,
    render_prompt,
)
from tasks.records import Corpus, Passage, Question, Task

MARK = re.compile(r"\[truncated: (\d+) more characters\]")
LONG_ID = "doc/" + "x" * 396
LONG_QUESTION = "Which glacier " + "is very long and " * 4_200 + "is the longest?"


def _words(n: int, seed: str) -> str:
    return " ".join(f"{seed}{i % 97} glacier" for i in range(n))


def long_task() -> Task:
    passages = [
        Passage("huge", "Huge", _words(15_000, "w")),  # about 150,000 characters
        Passage(LONG_ID, "T" * 70_000, "A glacier passage behind a long id and title."),
        *[Passage(f"wide{i}", f"Title {i} " + "t" * 20_000, f"glacier ice {i} " * 40) for i in range(12)],
        Passage("plain", "Plain", "Oslo is the capital of Norway."),
    ]
    questions = (
        Question("q/long", LONG_QUESTION, ("Vatnajokull",), ("huge",), split="test"),
        Question("q/plain", "What is the capital of Norway?", ("Oslo",), ("plain",), split="test"),
    )
    return Task("long", Corpus(passages), {"test": questions})


@pytest.fixture(scope="module")
def env_kwargs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("long-index")
    return {
        "task": long_task(),
        "split": "test",
        "backend": "rank_bm25",
        "retriever_kwargs": {"cache_dir": str(cache)},
        "max_turns": 50,
    }


def fits(env: SearchQAEnv, observation: str) -> bool:
    return env.observation_space.contains(observation) and len(observation) <= MAX_OBSERVATION_CHARS


def test_a_long_passage_is_cut_with_a_mark_that_counts(env_kwargs: dict) -> None:
    env = SearchQAEnv(**env_kwargs)
    env.reset(options={"question_id": "q/plain"})
    text = env.task.corpus["huge"].text
    observation = env.step("<read>huge</read>")[0]
    assert fits(env, observation) and len(observation) > 59_000
    marks = MARK.findall(observation)
    assert len(marks) == 1 and observation.endswith("more characters]\n</information>")
    shown = observation.split("\n", 2)[2].rsplit(" [truncated:", 1)[0]
    assert text.startswith(shown) and len(shown) + int(marks[0]) == len(text)


def test_a_long_doc_id_and_title_on_a_read(env_kwargs: dict) -> None:
    env = SearchQAEnv(**env_kwargs)
    env.reset(options={"question_id": "q/plain"})
    observation = env.step({"tool": "read", "doc_id": LONG_ID})[0]
    assert fits(env, observation)
    assert f"[{LONG_ID}] " in observation  # the id the agent asked for is shown whole
    assert "A glacier passage behind a long id and title." in observation and MARK.search(observation)


def test_a_long_question_in_the_prompt(env_kwargs: dict) -> None:
    env = SearchQAEnv(**env_kwargs)
    observation, _ = env.reset(options={"question_id": "q/long"})
    assert fits(env, observation) and MARK.search(observation)
    assert (parse_question(observation) or "").startswith("Which glacier is very long and")
    plain, _ = env.reset(options={"question_id": "q/plain"})
    assert plain.endswith("Question: What is the capital of Norway?") and not MARK.search(plain)


def test_long_titles_in_hits(env_kwargs: dict) -> None:
    env = SearchQAEnv(**{**env_kwargs, "top_k": 10, "snippet_chars": 5_000})
    env.reset(options={"question_id": "q/plain"})
    observation = env.step("<search>glacier ice title</search>")[0]
    assert fits(env, observation) and MARK.search(observation)
    assert [f"[{rank}] " in observation for rank in range(1, 11)] == [True] * 10


def test_long_tool_names_in_errors(env_kwargs: dict) -> None:
    env = SearchQAEnv(**env_kwargs)
    env.reset(options={"question_id": "q/plain"})
    observation, _, _, _, info = env.step({"tool": "x" * 100_000, "query": "glacier"})
    assert fits(env, observation) and observation.startswith("<error>") and info["error"]


def test_bytes_actions_are_explained_not_executed(env_kwargs: dict) -> None:
    env = SearchQAEnv(**env_kwargs)
    env.reset(options={"question_id": "q/plain"})
    observation, _, terminated, _, info = env.step(b"<answer>Oslo</answer>")
    assert observation.startswith("<error>") and "bytes" in observation and "decode" in observation
    assert not terminated and info["tool"] is None


def test_async_vector_env_steps_overlong_content(env_kwargs: dict) -> None:
    vec = gym.make_vec("SearchQA-v0", num_envs=2, vectorization_mode="async", **env_kwargs)
    try:
        observations, _ = vec.reset(seed=0, options={"question_id": "q/long"})
        assert all(MARK.search(o) for o in observations)
        for actions in (
            ["<read>huge</read>", {"tool": "read", "doc_id": LONG_ID}],
            ["<search>glacier ice title</search>", {"tool": "x" * 70_000}],
        ):
            observations, *_ = vec.step(actions)
            assert all(len(o) <= MAX_OBSERVATION_CHARS and MARK.search(o) for o in observations)
    finally:
        vec.close()


# ---------------------------------------------------------------------------------- properties

FIELD = st.one_of(
    st.text(max_size=50),
    st.builds(lambda n, c: c * n, st.integers(0, 70_000), st.sampled_from(["a", " ", "é", "\n", "|"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    hits=st.one_of(
        st.lists(st.tuples(FIELD, FIELD, FIELD), max_size=12),
        st.builds(lambda n: [("d", "t", "s" * 300)] * n, st.integers(0, 3_000)),  # a huge top_k
    ),
    passage=st.tuples(FIELD, FIELD, FIELD),
    question=FIELD,
    corpus=FIELD,
    top_k=st.integers(1, 10_000),
    turns=st.integers(1, 10**9),
)
def test_every_rendered_observation_fits(hits, passage, question, corpus, top_k, turns) -> None:
    rendered = {
        "hits": render_hits(hits),
        "passage": render_passage(*passage),
        "prompt": render_prompt(question, corpus=corpus, top_k=top_k, max_turns=turns),
        "error": render_error(question, turns_left=turns),
    }
    assert all(len(text) <= MAX_OBSERVATION_CHARS for text in rendered.values())
    # Content that fits is shown exactly as it always was.
    body = "\n".join(f"[{rank}] {d} | {t} | {s}" for rank, (d, t, s) in enumerate(hits, 1))
    unbudgeted = {
        "hits": f"<information>\n{body}\n</information>" if hits else None,
        "passage": "<information>\n[{}] {}\n{}\n</information>".format(*passage),
        "prompt": PROMPT_TEMPLATE.format(corpus=corpus, top_k=top_k, max_turns=turns, question=question),
        "error": f"<error>{question} Turns left: {turns}.</error>",
    }
    for kind, text in unbudgeted.items():
        if text is not None and len(text) <= MAX_OBSERVATION_CHARS - 200:
            assert rendered[kind] == text, kind


ACTIONS = st.one_of(
    st.sampled_from(["huge", LONG_ID, "plain", *[f"wide{i}" for i in range(12)]]).map(
        lambda d: f"<read>{d}</read>"
    ),
    st.lists(
        st.sampled_from(["glacier", "ice", "title", "w3", "oslo", "t" * 30]), min_size=1, max_size=5
    ).map(lambda words: f"<search>{' '.join(words)}</search>"),
    st.builds(lambda n: {"tool": "y" * n}, st.integers(0, 200_000)),
    st.text(max_size=100),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    top_k=st.integers(1, 20),
    snippet_chars=st.sampled_from([20, 300, 5_000, 100_000]),
    question_id=st.sampled_from(["q/long", "q/plain"]),
    actions=st.lists(ACTIONS, min_size=1, max_size=6),
)
def test_every_env_observation_fits_the_space(
    env_kwargs: dict, top_k: int, snippet_chars: int, question_id: str, actions: list
) -> None:
    env = SearchQAEnv(**{**env_kwargs, "top_k": top_k, "snippet_chars": snippet_chars})
    observation, _ = env.reset(options={"question_id": question_id})
    assert fits(env, observation)
    for action in actions:
        observation, *_ = env.step(action)
        assert fits(env, observation)


def test_the_module_corpus_really_overflows() -> None:
    """Guard against the fixture shrinking: without budgets these would not fit."""
    task = long_task()
    assert len(task.corpus["huge"].text) > 2 * MAX_OBSERVATION_CHARS
    assert len(task.corpus[LONG_ID].title) > MAX_OBSERVATION_CHARS
    assert len(LONG_QUESTION) > MAX_OBSERVATION_CHARS


def test_shared_memory_refuses_an_overlong_text_plainly() -> None:
    from gymnasium.vector.utils import shared_memory

    from searchenv.spaces import UnicodeText

    space = UnicodeText(10)
    memory = shared_memory.create_shared_memory(space, n=1)
    shared_memory.write_to_shared_memory(space, 0, "short", memory)
    assert shared_memory.read_from_shared_memory(space, memory, n=1)[0] == "short"
    with pytest.raises(ValueError, match="11-character text does not fit"):
        shared_memory.write_to_shared_memory(space, 0, "x" * 11, memory)
