"""The episode loop on a real local Ray cluster: same episodes as in-process, a killed actor, LMs, trainers.

One module-scoped cluster of two CPUs; the rollout actors are kept between tests, as a trainer
keeps them between steps, so only the first test of each actor count pays their start.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import ray  # `make test` installs the ray extra: a missing Ray fails, never skips

from agents.config import config_from_args
from agents.distributed import (
    _Pool,
    plan_chunks,
    play_chunk,
    run_episodes_on_ray,
    ship_lm_policy,
    shutdown_actors,
)
from agents.rollout import EpisodeResult, run_episodes
from agents.scripted import make_policy
from benchmarks.leaderboard import main as leaderboard

ENV = {"split": "test", "max_turns": 4}
# Two-turn episodes of a few tokens, as tests/test_train.py runs its trainers.
TRAIN = ["--hops", "1", "--max-turns", "2", "--max-new-tokens", "12", "--threads", "1", "--no-progress"]
TRAIN += ["--episodes-per-step", "4", "--num-envs", "4", "--micro-batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    # Workers cannot import this file by name: its factories travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    shutdown_actors()
    ray.shutdown()


def bm25(seed: int) -> Any:
    return make_policy("bm25", seed=seed)


def comparable(result: EpisodeResult) -> tuple[Any, ...]:
    """Everything an episode is, but its wall time."""
    return (result.question_id, result.group_id, result.reward, result.breakdown, result.correct,
            result.truncated, result.transcript, result.record, result.tokens)  # fmt: skip


def same(a: Sequence[EpisodeResult], b: Sequence[EpisodeResult]) -> bool:
    return len(a) == len(b) and all(comparable(x) == comparable(y) for x, y in zip(a, b))


def test_two_actors_play_the_in_process_episodes() -> None:
    local = run_episodes(bm25(0), ENV, 24, num_envs=4, seed=7, progress=False)
    on_ray = run_episodes_on_ray(bm25, ENV, 24, num_actors=2, num_envs=4, seed=7, progress=False)
    assert same(on_ray, local) and len({r.question_id for r in local}) > 12
    # GRPO groups from given questions: a group never splits, its members share the question.
    ids = [r.question_id for r in local[:6]]
    local = run_episodes(bm25(0), ENV, question_ids=ids, group_size=3, num_envs=4, seed=1, progress=False)
    on_ray = run_episodes_on_ray(
        bm25,
        ENV,
        question_ids=ids,
        group_size=3,
        num_actors=2,
        num_envs=4,
        seed=1,
        chunk_groups=2,
        progress=False,
    )
    assert same(on_ray, local)
    assert [(r.group_id, r.question_id) for r in on_ray] == [
        (g, q) for g, q in enumerate(ids) for _ in range(3)
    ]
    in_process = run_episodes_on_ray(
        bm25, ENV, question_ids=ids, group_size=3, num_actors=0, seed=1, progress=False
    )
    assert same(in_process, local)


class KillOnce:
    """bm25 that kills its own actor process on its ``on_call``-th act, the first time only."""

    def __init__(self, seed: int, marker: Path, on_call: int) -> None:
        self.inner, self.marker, self.on_call, self.calls = bm25(seed), marker, on_call, 0
        self.name = "kill-once"

    def reset(self, indices: Sequence[int] | None = None) -> None:
        self.inner.reset(indices)

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> Any:
        self.calls += 1
        if self.calls == self.on_call:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one kill in all
            except FileExistsError:
                return self.inner.act(observations, infos)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.act(observations, infos)


class KillOnceFactory:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, seed: int) -> KillOnce:
        return KillOnce(seed, self.marker, on_call=3)


def _pid(actor: Any, deadline_s: float = 120.0) -> int:
    """The actor's process id, waiting while Ray restarts it (a call then fails as unavailable)."""
    import time

    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return int(ray.get(actor.pid.remote()))
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.5)


def test_an_actor_killed_mid_chunk_is_restarted_and_its_chunk_replayed(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    run_episodes_on_ray(bm25, ENV, 4, num_actors=2, progress=False)  # the pool, whatever ran before
    pids = {_pid(actor) for actor in _Pool.actors}
    on_ray = run_episodes_on_ray(
        KillOnceFactory(marker), ENV, 32, num_actors=2, num_envs=4, seed=3, progress=False
    )
    assert int(marker.read_text()) in pids  # an actor of the pool died on its third act call
    local = run_episodes(bm25(0), ENV, 32, num_envs=4, seed=3, progress=False)
    assert same(on_ray, local)  # every episode once, in order, as in-process
    restarted = {_pid(actor) for actor in _Pool.actors}
    assert len(restarted) == 2 and int(marker.read_text()) not in restarted
    # The pool survived: the restarted actor plays the next call.
    assert same(run_episodes_on_ray(bm25, ENV, 32, num_actors=2, num_envs=4, seed=3, progress=False), local)


@pytest.fixture(scope="module")
def grpo_on_ray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agents.train import train

    out = tmp_path_factory.mktemp("runs") / "grpo"
    argv = ["--out", str(out), *TRAIN, *"--algo grpo --steps 1 --group-size 2 --ray-actors 2".split()]
    return train(config_from_args(argv))


def test_the_trainer_collects_a_grpo_step_on_two_actors(grpo_on_ray: Path) -> None:
    (metrics,) = [json.loads(line) for line in (grpo_on_ray / "metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 0 and metrics["episodes"] == 4.0 and metrics["action_tokens"] > 0
    # The learner's log-probs of the actors' tokens are the actors' own: they played its weights.
    assert metrics["logprob_gap"] < 1e-4
    assert json.loads((grpo_on_ray / "config.json").read_text())["ray_actors"] == 2


def test_an_lm_policy_samples_on_actors_from_per_chunk_seeds(grpo_on_ray: Path) -> None:
    from agents.weights import load_policy

    policy = load_policy(grpo_on_ray, greedy=False, max_new_tokens=8, seed=11, device="cpu")
    env = {**ENV, "max_turns": 2}
    factory = ship_lm_policy(policy)
    plan = {"num_envs": 2, "seed": 5, "policy_seed": 11, "chunk_groups": 2}  # four chunks on two actors
    on_ray = run_episodes_on_ray(factory, env, 8, num_actors=2, progress=False, **plan)
    # The questions come from the reset seeds alone, so they are the in-process ones.
    local = run_episodes(policy, env, 8, num_envs=2, seed=5, progress=False)
    assert [r.question_id for r in on_ray] == [r.question_id for r in local]
    assert all(r.tokens is not None and r.tokens.n_generated > 0 for r in on_ray)
    # Each chunk is play_chunk in this process with its own seed: the actors add nothing.
    chunks = plan_chunks(8, None, 1, plan.pop("chunk_groups"))
    assert [c.first_group for c in chunks] == [0, 2, 4, 6]
    replayed = [
        r for c in chunks for r in play_chunk(factory, env, c, group_size=1, env_id="SearchQA-v0", **plan)
    ]
    assert same(on_ray, replayed)


def test_the_leaderboard_plays_scripted_agents_and_checkpoints_on_actors(
    grpo_on_ray: Path, tmp_path: Path
) -> None:
    common = ["--max-questions", "6", "--num-envs", "2", "--no-plots", "--no-progress", "--max-turns", "2"]
    agents = ["--agents", "bm25", "oracle", f"grpo={grpo_on_ray}"]
    assert leaderboard([*agents, *common, "--ray-actors", "2", "--out", str(tmp_path / "ray")]) == 0
    assert leaderboard([*agents, *common, "--out", str(tmp_path / "local")]) == 0

    def rows(folder: str, agent: str) -> list[dict[str, Any]]:
        record = json.loads((tmp_path / folder / f"{agent}__factbook.json").read_text())
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in record["rows"]]

    for agent in ("bm25", "oracle", "grpo"):  # greedy checkpoints too, on these few episodes
        assert rows("ray", agent) == rows("local", agent), agent


def random_agent(seed: int) -> Any:
    return make_policy("random", seed=seed)


def test_one_actor_plays_what_two_play_for_any_policy() -> None:
    # A sampling policy's draws depend on the chunks, never on the number of actors.
    play = {
        n: run_episodes_on_ray(random_agent, ENV, 12, num_actors=n, chunk_groups=4, progress=False)
        for n in (2, 1)
    }
    assert same(play[1], play[2])
    local = run_episodes(bm25(0), ENV, 12, num_envs=3, seed=2, progress=False)
    assert same(run_episodes_on_ray(bm25, ENV, 12, num_actors=1, num_envs=3, seed=2, progress=False), local)
