"""Scripted baselines on the factbook test split, and the reward-hacking probes."""

from __future__ import annotations

import numpy as np
import pytest

from agents.rollout import run_episodes, summarize
from agents.scripted import PROBES, make_policy
from searchenv.resources import shared_task

ENV_KWARGS = {"split": "test", "max_turns": 8}


@pytest.fixture(scope="module")
def test_ids() -> list[str]:
    return [q.qid for q in shared_task("factbook").questions("test")]


@pytest.fixture(scope="module")
def results(test_ids: list[str]) -> dict[str, list]:
    names = ("random", "bm25", "oracle", *PROBES)
    return {
        name: run_episodes(make_policy(name), ENV_KWARGS, question_ids=test_ids, progress=False)
        for name in names
    }


def test_oracle_is_the_upper_bound(results: dict[str, list]) -> None:
    assert summarize(results["oracle"])["em"] >= 0.95


def test_heuristic_beats_random_and_random_is_near_zero(results: dict[str, list]) -> None:
    random_em = summarize(results["random"])["em"]
    assert random_em < 0.05
    assert summarize(results["bm25"])["em"] > random_em + 0.1


@pytest.mark.parametrize("probe", PROBES)
def test_hacking_probes_earn_less_than_the_honest_heuristic(results: dict[str, list], probe: str) -> None:
    honest = np.mean([r.reward for r in results["bm25"]])
    hacked = np.mean([r.reward for r in results[probe]])
    assert hacked < honest, f"{probe} earns {hacked:.3f} >= heuristic {honest:.3f} under the default preset"


def test_results_follow_the_requested_question_order(results: dict[str, list], test_ids: list[str]) -> None:
    assert [r.question_id for r in results["bm25"]] == test_ids


def test_rollout_is_reproducible_whatever_the_batch_size(test_ids: list[str]) -> None:
    ids = test_ids[:12]
    one = run_episodes(
        make_policy("random", seed=3), ENV_KWARGS, question_ids=ids, num_envs=1, progress=False
    )
    four = run_episodes(
        make_policy("random", seed=3), ENV_KWARGS, question_ids=ids, num_envs=4, progress=False
    )
    # Random draws come from the policy's own generator in act-call order, so batch size changes
    # which draw an episode gets; the env side (question, seeds) must not change.
    assert [r.question_id for r in one] == [r.question_id for r in four] == ids


def test_unknown_policy_name() -> None:
    with pytest.raises(ValueError, match="known"):
        make_policy("genius")


def test_varied_oracle_reaches_the_evidence_by_varied_queries() -> None:
    from agents.scripted import OraclePolicy

    task = shared_task("factbook")
    ids = [q.qid for q in task.questions("test") if q.hops == 1][:40]
    kwargs = {**ENV_KWARGS, "hops": 1}
    plain = run_episodes(OraclePolicy(task), kwargs, question_ids=ids, progress=False)
    varied = run_episodes(
        OraclePolicy(task, seed=1, first_query="varied"), kwargs, question_ids=ids, progress=False
    )
    again = run_episodes(
        OraclePolicy(task, seed=1, first_query="varied"), kwargs, question_ids=ids, progress=False
    )
    first = [[r.record.turns[0].argument for r in rs] for rs in (plain, varied, again)]
    assert first[1] == first[2]  # seeded
    changed = sum(a != b for a, b in zip(first[0], first[1], strict=True))
    assert changed >= len(ids) // 2
    # Same words, other order (or one fewer): still the oracle, still nearly always right.
    assert summarize(varied)["em"] >= 0.9


def test_titled_oracle_finds_more_evidence_with_its_first_search() -> None:
    """Title (section) words in the first query: the gold passage is in the top 2 more often."""
    from agents.algos.sft import imitable
    from agents.scripted import OraclePolicy

    task = shared_task("factbook")
    ids = [q.qid for q in task.questions("train") if q.hops == 1][:120]
    kwargs = {"split": "train", "hops": 1, "max_turns": 4, "top_k": 2}

    def first_search_finds(results: list) -> float:
        return float(
            np.mean(
                [
                    bool(set(r.record.question.supporting_doc_ids) & set(r.record.turns[0].hit_doc_ids))
                    for r in results
                ]
            )
        )

    plain = run_episodes(OraclePolicy(task), kwargs, question_ids=ids, progress=False)
    titled = run_episodes(OraclePolicy(task, first_query="titled"), kwargs, question_ids=ids, progress=False)
    assert first_search_finds(titled) > first_search_finds(plain) + 0.05
    assert summarize(titled)["em"] == 1.0
    # Episodes where no search surfaced the gold passage read it by id: not imitable.
    by_id = [r for r in titled if not imitable(r)]
    assert by_id and all(
        not any(set(r.record.question.supporting_doc_ids) & set(t.hit_doc_ids) for t in r.record.turns)
        for r in by_id
    )
    with pytest.raises(ValueError, match="first_query must be one of"):
        OraclePolicy(task, first_query="random")
