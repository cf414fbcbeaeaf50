"""The one interface every agent implements: scripted, learned, or a reward-hacking probe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Action = str | Mapping[str, Any]


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations to a batch of actions.

    ``observations[i]`` and ``infos[i]`` belong to one env of a batch. Policies that keep
    per-env state key it by ``slot(infos[i], i)``: the env's slot in a fixed-size batch, which
    ``agents.rollout`` puts in ``info["slot"]`` when it passes only the envs still running (a
    gymnasium vector env passes every env, in order, so the position is the slot). An
    observation with ``infos[i]["turn"] == 0`` is a reset prompt: a new episode for that slot.
    ``reset(indices)`` forgets the history of the given envs
    (all of them when ``indices`` is None). Actions are raw text or structured dicts such as
    ``{"tool": "search", "query": "capital of France"}``.
    """

    name: str

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> Sequence[Action]:
        """One action per observation."""
        ...

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Forget the per-env state of ``indices`` (of every env when None)."""
        ...


def slot(info: Mapping[str, Any], position: int) -> int:
    """The batch slot an observation belongs to (see ``Policy``)."""
    value = info.get("slot", position)
    return int(value)


def info_list(
    infos: Sequence[Mapping[str, Any]] | Mapping[str, Any], count: int
) -> Sequence[Mapping[str, Any]]:
    """Per-env infos from a list, or from a gymnasium vector env's dict of arrays."""
    if not isinstance(infos, Mapping):
        return list(infos)
    per_env: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, values in infos.items():
        if key.startswith("_") or isinstance(values, Mapping):
            continue
        present = infos.get(f"_{key}")
        for index in range(count):
            if present is None or bool(present[index]):
                value = values[index]
                per_env[index][key] = value.item() if hasattr(value, "item") else value
    return per_env
