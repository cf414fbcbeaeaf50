"""Scale-out: the one episode loop (``agents.rollout.run_episodes``) played on Ray actors.

    plan      the groups ``run_episodes`` would play, cut into chunks of whole groups
    dispatch  one chunk at a time to each idle actor, which runs ``run_episodes`` on it
    collect   results keyed by episode index; a chunk whose actor died is played again

Semantics are those of ``run_episodes``: group ``g`` is reset with seed ``seed + g`` and asks
``question_ids[g]`` (or the question its first member draws), and results come back in start
order. A chunk starting at group ``g0`` is ``run_episodes`` with seed ``seed + g0`` on its slice
of the questions, so a deterministic policy (``bm25``, ``oracle``, the probes, a greedy LM up
to floating-point batching effects) plays the same episodes with 0, 1 or N actors.

Each chunk builds its policy inside the actor from a picklable ``make_policy(seed)``, seeded
from ``policy_seed`` and the chunk's first group, so a sampling policy draws other random numbers
than in-process (one generator through every episode) but is still deterministic: an actor killed
mid-chunk changes nothing, because its chunk is replayed from its own seed. Actors are kept
between calls; each loads the task and retriever once (bm25s by mmap, or a remote backend).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.policy import Policy
from agents.rollout import EpisodeResult, _progress_bar, run_episodes

if TYPE_CHECKING:
    from agents.lm.policy import LMPolicy

PolicyFactory = Callable[[int], Policy]
# An actor that Ray is restarting answers "unavailable"; its chunk is resubmitted after a pause.
_UNAVAILABLE_PAUSE_S = 0.25
_MAX_UNAVAILABLE_WAITS = 480  # two minutes of restarting


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ImportError: when Ray is not installed, naming the extra that installs it.
    """
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            f"running episodes on Ray actors needs ray: pip install -e .[ray] ({error})"
        ) from error
    return ray


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Consecutive groups played by one actor call: groups ``first_group`` to ``first_group + n_groups - 1``.

    ``question_ids`` holds the groups' questions, or None when each group's first member draws
    its own from its reset seed.
    """

    index: int
    first_group: int
    n_groups: int
    question_ids: tuple[str, ...] | None


def plan_chunks(
    n_episodes: int | None, question_ids: Sequence[str] | None, group_size: int, chunk_groups: int
) -> list[Chunk]:
    """The groups ``run_episodes`` would play for these arguments, in chunks of ``chunk_groups``.

    >>> [(c.first_group, c.n_groups) for c in plan_chunks(10, None, 2, 2)]
    [(0, 2), (2, 2), (4, 1)]

    Raises:
        ValueError: on the arguments ``run_episodes`` rejects, or ``chunk_groups < 1``.
    """
    if group_size < 1 or chunk_groups < 1:
        raise ValueError(f"group_size and chunk_groups must be >= 1, got {group_size} and {chunk_groups}")
    if (n_episodes is None) == (question_ids is None):
        raise ValueError("give exactly one of n_episodes and question_ids")
    if question_ids is None and (int(n_episodes or 0) < 1 or int(n_episodes or 0) % group_size):
        raise ValueError(f"n_episodes={n_episodes} must be a positive multiple of group_size={group_size}")
    ids = None if question_ids is None else tuple(str(q) for q in question_ids)
    n_groups = len(ids) if ids is not None else int(n_episodes or 0) // group_size
    return [
        Chunk(index, first, min(chunk_groups, n_groups - first), ids and ids[first : first + chunk_groups])
        for index, first in enumerate(range(0, n_groups, chunk_groups))
    ]


def default_chunk_groups(n_groups: int, num_actors: int, num_envs: int, group_size: int) -> int:
    """Groups per chunk: two chunks per actor, but no chunk under two batches of envs.

    Two chunks per actor let a fast actor take over a slow one's second chunk. But a chunk's
    batch of envs drains at its end (no next episode to refill a slot), which costs an LM
    policy its batching, so a chunk keeps at least ``2 * num_envs`` episodes while every actor
    still gets one.

    >>> [default_chunk_groups(n, 2, 8, 1) for n in (635, 16, 64)], default_chunk_groups(4, 2, 8, 2)
    ([159, 8, 16], 2)
    """
    two_per_actor = math.ceil(n_groups / (2 * num_actors))
    two_batches = min(math.ceil(2 * num_envs / group_size), math.ceil(n_groups / num_actors))
    return max(1, two_per_actor, two_batches)


def chunk_seed(policy_seed: int, first_group: int) -> int:
    """The seed of the policy that plays the chunk starting at ``first_group``.

    >>> chunk_seed(0, 4) == chunk_seed(0, 4) != chunk_seed(0, 5)
    True
    """
    return int(np.random.SeedSequence([policy_seed, first_group]).generate_state(1)[0] % (2**31 - 1))


def play_chunk(
    make_policy: PolicyFactory,
    env_kwargs: Mapping[str, Any],
    chunk: Chunk,
    *,
    group_size: int,
    seed: int,
    policy_seed: int,
    num_envs: int,
    env_id: str,
) -> list[EpisodeResult]:
    """One chunk through ``run_episodes`` in this process: what each actor call runs.

    Group ids come back global (``chunk.first_group`` added), as the in-process loop numbers them.
    """
    policy = make_policy(chunk_seed(policy_seed, chunk.first_group))
    results = run_episodes(
        policy,
        env_kwargs,
        None if chunk.question_ids is not None else chunk.n_groups * group_size,
        chunk.question_ids,
        num_envs=num_envs,
        seed=seed + chunk.first_group,
        group_size=group_size,
        env_id=env_id,
        progress=False,
    )
    return [dataclasses.replace(r, group_id=r.group_id + chunk.first_group) for r in results]


class RolloutWorker:
    """The body of a rollout actor (``ray.remote`` is applied lazily, so Ray stays optional)."""

    def play(
        self, make_policy: PolicyFactory, env_kwargs: Mapping[str, Any], chunk: Chunk, **kwargs: Any
    ) -> Any:
        """``play_chunk`` in the actor's process."""
        return play_chunk(make_policy, env_kwargs, chunk, **kwargs)

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()


def _connect(num_cpus: int) -> Any:
    """Ray, connected: to ``RAY_ADDRESS`` or a running cluster, else a new local one."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=max(num_cpus, os.cpu_count() or 1), include_dashboard=False)
    return ray


class _Pool:
    """The actors kept between calls; one pool at a time, so a new one never waits for CPUs."""

    key: tuple[Any, ...] | None = None
    actors: list[Any] = []

    @classmethod
    def get(cls, num_actors: int, max_restarts: int, options: Mapping[str, Any]) -> list[Any]:
        ray = _connect(num_actors)
        key = (ray.get_runtime_context().get_job_id(), num_actors, max_restarts, sorted(options.items()))
        if key != cls.key:
            shutdown_actors()
            settings = {"num_cpus": 1, "max_restarts": max_restarts, "max_task_retries": 0, **options}
            if ray.cluster_resources().get("CPU", 0) < num_actors * settings["num_cpus"]:
                warnings.warn(
                    f"{num_actors} actors of {settings['num_cpus']} CPU wait for a cluster with "
                    f"{ray.cluster_resources().get('CPU', 0)} CPUs to grow; pass "
                    "actor_options={'num_cpus': ...} to fit them",
                    stacklevel=3,
                )
            remote = ray.remote(RolloutWorker).options(**settings)
            cls.actors, cls.key = [remote.remote() for _ in range(num_actors)], key
        return cls.actors


def shutdown_actors() -> None:
    """Kill the kept rollout actors (the next call starts new ones)."""
    if _Pool.actors and _Pool.key is not None:
        ray = require_ray()
        # Handles of an earlier Ray session died with it.
        if ray.is_initialized() and _Pool.key[0] == ray.get_runtime_context().get_job_id():
            for actor in _Pool.actors:
                ray.kill(actor, no_restart=True)
    _Pool.actors, _Pool.key = [], None


def run_episodes_on_ray(
    make_policy: PolicyFactory,
    env_kwargs: Mapping[str, Any] | None = None,
    n_episodes: int | None = None,
    question_ids: Sequence[str] | None = None,
    *,
    num_actors: int,
    num_envs: int = 8,
    seed: int = 0,
    group_size: int = 1,
    env_id: str = "SearchQA-v0",
    progress: bool = True,
    policy_seed: int | None = None,
    chunk_groups: int | None = None,
    max_restarts: int = 3,
    actor_options: Mapping[str, Any] | None = None,
) -> list[EpisodeResult]:
    """``run_episodes`` with the groups spread over ``num_actors`` Ray actors (0: in this process).

    Arguments and results are those of ``agents.rollout.run_episodes``, except that the policy
    comes from ``make_policy(seed)``, a picklable factory called once per chunk inside the actor
    with ``chunk_seed(policy_seed, first_group)`` (``policy_seed`` defaults to ``seed``). With
    ``num_actors=0`` it is ``run_episodes(make_policy(policy_seed), ...)``, the in-process loop.

    The groups are cut into chunks of ``chunk_groups`` groups (default: ``default_chunk_groups``);
    a group never spans two actors. Each actor plays one chunk at a time with up to ``num_envs``
    envs. An actor whose process dies is restarted by Ray (up to ``max_restarts`` times) and the
    chunk it had not returned is played again, on the first idle actor, from the same seeds;
    results are keyed by episode index, so each episode is counted once. Ray starts a local
    cluster when none is running (or joins ``RAY_ADDRESS``). ``actor_options`` go to the actors'
    ``.options()`` (e.g. ``{"num_gpus": 0.5}``, or ``{"num_cpus": 0.5}`` to fit more actors).

    Raises:
        ValueError: on the arguments ``run_episodes`` rejects, or ``num_actors < 0``.
        RuntimeError: when a chunk keeps killing its actor, or every actor is gone for good.
        ImportError: when Ray is needed and not installed.
    """
    if num_actors < 0:
        raise ValueError(f"num_actors must be >= 0, got {num_actors}")
    policy_seed = seed if policy_seed is None else policy_seed
    if num_actors == 0:
        return run_episodes(
            make_policy(policy_seed), env_kwargs, n_episodes, question_ids, num_envs=num_envs, seed=seed,
            group_size=group_size, env_id=env_id, progress=progress,
        )  # fmt: skip
    n_groups = len(question_ids) if question_ids is not None else int(n_episodes or 0) // max(group_size, 1)
    per_chunk = chunk_groups or default_chunk_groups(n_groups, num_actors, num_envs, group_size)
    chunks = plan_chunks(n_episodes, question_ids, group_size, per_chunk)
    if not chunks:
        return []
    ray = require_ray()
    actors = _Pool.get(num_actors, max_restarts, actor_options or {})
    shared = (ray.put(make_policy), ray.put(dict(env_kwargs or {})))
    settings: dict[str, Any] = {"group_size": group_size, "seed": seed, "policy_seed": policy_seed}
    settings |= {"num_envs": num_envs, "env_id": env_id}
    total = sum(c.n_groups for c in chunks) * group_size
    bar = _progress_bar(total, progress, f"{getattr(make_policy, 'name', 'policy')} on {num_actors} actors")
    results: dict[int, EpisodeResult] = {}

    def submit(actor: Any, chunk: Chunk) -> Any:
        return actor.play.remote(*shared, chunk, **settings)

    try:
        for chunk, played in _dispatch(actors, chunks, submit, max_restarts):
            first = chunk.first_group * group_size
            for offset, result in enumerate(played):
                results.setdefault(first + offset, result)  # keyed, so a replay never counts twice
            if bar is not None:
                bar.update(len(played))
    finally:
        if bar is not None:
            bar.close()
    return [results[episode] for episode in range(total)]


def _dispatch(
    actors: Sequence[Any], chunks: Sequence[Chunk], submit: Callable[[Any, Chunk], Any], max_restarts: int
) -> Iterator[tuple[Chunk, list[EpisodeResult]]]:
    """Yield ``(chunk, results)`` as actors return them, one chunk in flight per actor.

    A chunk whose actor died goes back to the front of the queue: it left no result behind,
    and its replay uses the same seeds. An actor that died more than ``max_restarts`` times is
    not restarted by Ray, so it gets no more chunks (and the pool is dropped at the end); a chunk
    that lost its actor more than ``max_restarts`` times is taken to be what kills them.
    """
    ray = require_ray()
    lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
    waiting, idle = deque(chunks), deque(actors)
    running: dict[Any, tuple[Any, Chunk]] = {}
    deaths: Counter[Any] = Counter()
    tries: Counter[int] = Counter()
    waits: Counter[int] = Counter()
    try:
        while waiting or running:
            while waiting and idle:
                actor, chunk = idle.popleft(), waiting.popleft()
                running[submit(actor, chunk)] = (actor, chunk)
            if not running:
                raise RuntimeError(f"every Ray actor died more than max_restarts={max_restarts} times")
            (done,), _ = ray.wait(list(running), num_returns=1)
            actor, chunk = running.pop(done)
            try:
                played = ray.get(done)
            except ray.exceptions.ActorUnavailableError as error:
                # Restarting after a death already counted, not a new one: the chunk waits for it.
                waits[chunk.index] += 1
                if waits[chunk.index] > _MAX_UNAVAILABLE_WAITS:
                    raise RuntimeError(f"actor of chunk {chunk.index} stayed unavailable") from error
                waiting.appendleft(chunk)
                idle.append(actor)
                time.sleep(_UNAVAILABLE_PAUSE_S)
                continue
            except lost as error:
                deaths[actor] += 1
                tries[chunk.index] += 1
                if tries[chunk.index] > max_restarts:
                    raise RuntimeError(
                        f"chunk {chunk.index} lost its actor {tries[chunk.index]} times"
                    ) from error
                waiting.appendleft(chunk)
                if deaths[actor] <= max_restarts:
                    idle.append(actor)  # Ray restarts it; calls wait until it is up
                continue
            idle.append(actor)
            yield chunk, played
    except BaseException:
        shutdown_actors()  # chunks still running would hold the kept actors up: start afresh
        raise
    if any(count > max_restarts for count in deaths.values()):
        shutdown_actors()  # a pool with a dead actor is not kept for the next call


# ---------------------------------------------------------------------------------------------- LM policies


_fetched: dict[str, tuple[Any, Any]] = {}  # the last weights an actor fetched, by object id


@dataclasses.dataclass(frozen=True)
class ShippedLMPolicy:
    """A ``PolicyFactory`` of ``LMPolicy`` over weights put once in Ray's object store.

    ``weights`` is an object ref to ``(model, tokenizer)`` on the CPU; ``settings`` the
    ``LMPolicy`` arguments other than the seed. An actor fetches the weights once per ref and
    moves them to its own device (a CPU unless ``actor_options`` gave it a GPU).
    """

    weights: Any
    settings: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The policy's name (for progress bars)."""
        return str(self.settings.get("name", "lm"))

    def __call__(self, seed: int) -> LMPolicy:
        """A fresh ``LMPolicy`` (no per-env state) with this seed."""
        from agents.device import resolve_device
        from agents.lm.policy import LMPolicy

        key = self.weights.hex()
        if key not in _fetched:
            model, tokenizer = require_ray().get(self.weights)
            model = model.to(resolve_device("auto")).eval().requires_grad_(False)
            _fetched.clear()  # one set of weights per actor: a trainer's old steps are dropped
            _fetched[key] = (model, tokenizer)
        model, tokenizer = _fetched[key]
        return LMPolicy(model, tokenizer, seed=seed, **self.settings)


def ship_lm_policy(policy: LMPolicy) -> ShippedLMPolicy:
    """Put ``policy``'s current weights in the object store; a factory of the same policy.

    A trainer calls it once per collection, so actors play the weights of that step. Weights on
    a GPU are copied to the CPU first (actors need not share the trainer's device).
    """
    ray = _connect(1)
    model = policy.model
    if str(policy.device) != "cpu":
        import copy

        model = copy.deepcopy(model).to("cpu")
    # Every constructor argument the policy keeps as an attribute travels; the seed is the chunk's.
    arguments = set(inspect.signature(type(policy)).parameters) - {"model", "tokenizer", "seed"}
    settings = {name: getattr(policy, name) for name in sorted(arguments) if hasattr(policy, name)}
    settings["observation_role"] = policy.format.observation_role
    return ShippedLMPolicy(ray.put((model, policy.tokenizer)), settings)
