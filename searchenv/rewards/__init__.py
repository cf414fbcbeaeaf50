"""Rewards for SearchQA episodes, in the style of TRL's ``rewards/``: small pure functions.

Each component maps a finished :class:`~searchenv.episode.EpisodeRecord` to [0, 1]:

============  =============================================================================
correctness   best over gold answers of normalized EM (variants ``f1``, ``cover_em``; or a judge)
format        share of turns whose action parsed; 0 without an answer
retry         ReZero's persistence reward (``strict`` counts distinct queries only)
evidence      1 if a search returned a gold supporting document (by id)
diversity     ReZero's query-diversity score
============  =============================================================================

Presets weight them (``PRESETS``: ``rezero``, ``rezero-strict``, ``em``, ``f1``);
``reward_breakdown`` gives every component, ``total_reward`` the weighted sum and
``dense_increments`` the per-turn share of it.
"""

from searchenv.rewards.components import (
    CORRECTNESS_VARIANTS,
    Judge,
    check_record,
    correctness,
    distinct_query_count,
    diversity,
    evidence,
    format_score,
    retry,
)
from searchenv.rewards.normalize import (
    answer_tokens,
    base_similarity,
    cover_match,
    exact_match,
    normalize_answer,
    normalize_query,
    operator_factor,
    query_key,
    query_similarity,
    token_f1,
)
from searchenv.rewards.presets import (
    COMPONENT_NAMES,
    PRESETS,
    PresetLike,
    RewardPreset,
    dense_increments,
    episode_reward,
    get_preset,
    reward_breakdown,
    total_reward,
)

__all__ = [
    "COMPONENT_NAMES",
    "CORRECTNESS_VARIANTS",
    "PRESETS",
    "Judge",
    "PresetLike",
    "RewardPreset",
    "answer_tokens",
    "base_similarity",
    "check_record",
    "correctness",
    "cover_match",
    "dense_increments",
    "distinct_query_count",
    "diversity",
    "episode_reward",
    "evidence",
    "exact_match",
    "format_score",
    "get_preset",
    "normalize_answer",
    "normalize_query",
    "operator_factor",
    "query_key",
    "query_similarity",
    "retry",
    "reward_breakdown",
    "token_f1",
    "total_reward",
]
