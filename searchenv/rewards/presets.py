"""Reward presets (named weightings of the components), the breakdown, and dense increments.

A preset is a weighted sum of component values. ``reward_breakdown`` always computes every
component (unweighted), so a log line or a leaderboard row has the same keys whatever the
preset; ``total_reward`` applies the weights.

Dense mode pays, at turn ``t``, the change of the total between the record cut after ``t``
turns and after ``t + 1`` turns. The empty record scores 0 on every component, so the
increments telescope to exactly the terminal total. Increments can be negative (a duplicate
query lowers the diversity score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from numbers import Real

from searchenv.episode import EpisodeRecord
from searchenv.rewards.components import (
    CORRECTNESS_VARIANTS,
    Judge,
    check_record,
    correctness,
    diversity,
    evidence,
    format_score,
    retry,
)

COMPONENT_NAMES: tuple[str, ...] = ("correctness", "format", "retry", "evidence", "diversity")


def _validated_weights(weights: object) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise TypeError(f"preset weights must be a mapping, got {type(weights).__name__}")
    if not weights:
        raise ValueError(f"preset weights are empty; use some of {COMPONENT_NAMES}")
    validated: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in COMPONENT_NAMES:
            raise ValueError(f"unknown reward component {name!r}; expected one of {COMPONENT_NAMES}")
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise TypeError(f"weight of {name!r} must be a real number, got {type(weight).__name__}")
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of {name!r} must be finite and >= 0, got {weight!r}")
        validated[name] = value
    if not any(validated.values()):
        raise ValueError("preset weights are all zero: every episode would score 0")
    return validated


@dataclass(frozen=True)
class RewardPreset:
    """A named weighting of the reward components.

    ``weights`` maps component names (see ``COMPONENT_NAMES``) to finite non-negative weights;
    components left out weigh 0. ``correctness_variant`` picks em / f1 / cover_em;
    ``strict_retry`` counts distinct queries instead of search tags.

    >>> preset = RewardPreset("mine", {"correctness": 1, "retry": 0.5})
    >>> preset.max_total
    1.5
    >>> RewardPreset("bad", {"speed": 1.0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown reward component 'speed'; expected one of ('correctness', 'format', ...)
    """

    name: str
    weights: Mapping[str, float]
    correctness_variant: str = "em"
    strict_retry: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"preset name must be a non-empty str, got {self.name!r}")
        if self.correctness_variant not in CORRECTNESS_VARIANTS:
            variant = self.correctness_variant
            raise ValueError(f"unknown correctness variant {variant!r}; expected {CORRECTNESS_VARIANTS}")
        if not isinstance(self.strict_retry, bool):
            raise TypeError(f"strict_retry must be a bool, got {type(self.strict_retry).__name__}")
        # A private copy (a plain dict, so presets pickle into async vector-env workers).
        object.__setattr__(self, "weights", _validated_weights(self.weights))

    def __hash__(self) -> int:
        weights = tuple(sorted(self.weights.items()))
        return hash((self.name, weights, self.correctness_variant, self.strict_retry))

    @property
    def max_total(self) -> float:
        """The largest total this preset can pay (every component at 1)."""
        return sum(self.weights.values())


_REZERO_WEIGHTS = {"correctness": 4.0, "format": 2.0, "retry": 1.0, "evidence": 1.0, "diversity": 1.0}

PRESETS: Mapping[str, RewardPreset] = {
    preset.name: preset
    for preset in (
        RewardPreset("rezero", _REZERO_WEIGHTS),
        # ReZero's retry pays for repeating one query; this variant does not.
        RewardPreset("rezero-strict", _REZERO_WEIGHTS, strict_retry=True),
        # The ablation of ReZero's persistence experiment: the same terms without retry.
        RewardPreset("rezero-no-retry", {k: v for k, v in _REZERO_WEIGHTS.items() if k != "retry"}),
        RewardPreset("em", {"correctness": 1.0}),  # Search-R1's outcome reward
        RewardPreset("f1", {"correctness": 1.0}, correctness_variant="f1"),
    )
}


# What every function taking a preset accepts: a name, a preset, or a weights mapping.
PresetLike = str | RewardPreset | Mapping[str, float]


def get_preset(preset: PresetLike) -> RewardPreset:
    """Resolve a preset name, pass a preset through, or build a custom one from weights.

    >>> get_preset("rezero-strict").strict_retry
    True
    >>> get_preset({"correctness": 1.0}).name
    'custom'
    >>> get_preset("ReZero")
    Traceback (most recent call last):
    ...
    ValueError: unknown reward preset 'ReZero'; known presets: em, f1, rezero, rezero-no-retry, rezero-strict
    """
    if isinstance(preset, RewardPreset):
        return preset
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown reward preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[preset]
    if isinstance(preset, Mapping):
        return RewardPreset("custom", preset)
    raise TypeError(f"expected a preset name, RewardPreset or weights mapping, got {type(preset).__name__}")


def reward_breakdown(
    record: EpisodeRecord, preset: PresetLike, judge: Judge | None = None
) -> dict[str, float]:
    """Every component's unweighted value, keyed by component name (in ``COMPONENT_NAMES`` order).

    The preset decides the correctness variant and whether retry is strict; ``judge`` (see
    :func:`~searchenv.rewards.components.correctness`) replaces the string match.
    """
    resolved = get_preset(preset)
    check_record(record)
    return {
        "correctness": correctness(record, resolved.correctness_variant, judge=judge),
        "format": format_score(record),
        "retry": retry(record, strict=resolved.strict_retry),
        "evidence": evidence(record),
        "diversity": diversity(record),
    }


def total_reward(breakdown: Mapping[str, float], preset: PresetLike) -> float:
    """The weighted sum of a breakdown under a preset.

    >>> total_reward({"correctness": 1.0, "format": 0.5, "retry": 0.0, "evidence": 1.0,
    ...               "diversity": 0.2}, "rezero")
    6.2
    """
    resolved = get_preset(preset)
    total = 0.0
    for name, weight in resolved.weights.items():
        if name not in breakdown:
            raise ValueError(f"breakdown lacks component {name!r} that preset {resolved.name!r} weighs")
        value = breakdown[name]
        if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"component {name!r} has value {value!r}, expected a number in [0, 1]")
        total += weight * float(value)
    return total


def episode_reward(record: EpisodeRecord, preset: PresetLike, judge: Judge | None = None) -> float:
    """Shorthand for ``total_reward(reward_breakdown(record, preset, judge), preset)``."""
    return total_reward(reward_breakdown(record, preset, judge=judge), preset)


def dense_increments(record: EpisodeRecord, preset: PresetLike, judge: Judge | None = None) -> list[float]:
    """One reward per turn: the change of the total that turn caused.

    ``sum(dense_increments(r, p)) == episode_reward(r, p)`` up to float rounding. An env paying
    online should keep the previous prefix total and pay ``episode_reward(now) - previous``
    each step rather than call this (quadratic) function.
    """
    resolved = get_preset(preset)
    check_record(record)
    totals = [episode_reward(record.prefix(n), resolved, judge=judge) for n in range(len(record.turns) + 1)]
    if totals[0] != 0.0:  # the telescoping guarantee rests on this
        raise AssertionError(f"an empty record scored {totals[0]}, expected 0")
    return [after - before for before, after in pairwise(totals)]
