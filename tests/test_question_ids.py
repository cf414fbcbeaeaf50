"""Opaque question ids during an episode, readable ones after it, both accepted by reset."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

from agents.rollout import run_episodes
from agents.scripted import make_policy
from searchenv.env import SearchQAEnv
from searchenv.question_ids import opaque_question_id
from searchenv.resources import shared_task

OPAQUE = re.compile(r"q-[0-9a-f]{12}")
ENV_KWARGS = {"split": "test", "max_turns": 4}


@pytest.fixture(scope="module")
def env() -> SearchQAEnv:
    return SearchQAEnv(**ENV_KWARGS)


def test_info_holds_an_opaque_id_until_the_end(env: SearchQAEnv) -> None:
    question = next(q for q in env.questions if q.kind == "internet_code")
    _, info = env.reset(options={"question_id": question.qid})
    ids = [info["question_id"]]
    for action in ("<search>internet code</search>", "nonsense", "<answer>x</answer>"):
        _, _, terminated, _, info = env.step(action)
        ids.append(info["question_id"])
        if not terminated:
            assert "readable_question_id" not in info
    assert set(ids) == {opaque_question_id(question.qid)} and OPAQUE.fullmatch(ids[0])
    assert info["readable_question_id"] == question.qid
    assert info["episode"].question_id == question.qid
    assert info["episode"].opaque_question_id == ids[0]


def test_reset_takes_the_readable_or_the_opaque_id(env: SearchQAEnv) -> None:
    question = env.questions[5]
    by_readable = env.reset(options={"question_id": question.qid})
    by_opaque = env.reset(options={"question_id": opaque_question_id(question.qid)})
    assert by_readable[0] == by_opaque[0] and by_readable[1] == by_opaque[1]
    with pytest.raises(ValueError, match="not in the 'test' split"):
        env.reset(options={"question_id": "q-000000000000"})


def test_groups_share_a_question_and_results_carry_the_readable_id() -> None:
    results = run_episodes(
        make_policy("bm25"), ENV_KWARGS, n_episodes=6, group_size=3, seed=4, progress=False
    )
    readable = {q.qid for q in shared_task("factbook").questions("test")}
    for group in range(2):
        ids = {r.question_id for r in results if r.group_id == group}
        assert len(ids) == 1 and ids <= readable


def test_oracle_and_vector_envs_still_work() -> None:
    ids = [q.qid for q in SearchQAEnv(**ENV_KWARGS, hops=1).questions[:6]]
    results = run_episodes(make_policy("oracle"), {**ENV_KWARGS, "hops": 1}, question_ids=ids, progress=False)
    assert [r.question_id for r in results] == ids and all(r.correct for r in results)
    vec = gym.make_vec("SearchQA-v0", num_envs=2, vectorization_mode="sync", **ENV_KWARGS)
    try:
        _, infos = vec.reset(seed=[3, 3])
        assert infos["question_id"][0] == infos["question_id"][1] and OPAQUE.fullmatch(
            infos["question_id"][0]
        )
    finally:
        vec.close()


def test_no_opaque_collisions_in_the_factbook() -> None:
    task = shared_task("factbook")
    readable = [q.qid for qs in task.splits.values() for q in qs]
    assert len({opaque_question_id(qid) for qid in readable}) == len(readable)


def test_an_id_outside_the_split_or_the_filters_says_which() -> None:
    task = shared_task("factbook")
    train_id = task.questions("train")[0].qid
    with pytest.raises(ValueError, match=re.escape("it is in 'train': pass split='train'")):
        SearchQAEnv(task="factbook", split="test").reset(options={"question_id": train_id})
    two_hop = next(q.qid for q in task.questions("test") if q.hops == 2)
    with pytest.raises(ValueError, match=r"is in the 'test' split .* filters \(hops=1\) leave it out"):
        SearchQAEnv(task="factbook", split="test", hops=1).reset(options={"question_id": two_hop})
