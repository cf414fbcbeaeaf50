"""Gymnasium ids of SearchQA.

``import searchenv`` registers them; ``gym.make("searchenv:SearchQA-v0")`` imports this package
first, so both spellings work.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

ENTRY_POINT = "searchenv.env:SearchQAEnv"

# id -> constructor kwargs. The default id carries the default task, backend and preset.
VARIANTS: dict[str, dict[str, Any]] = {
    "SearchQA-v0": {},
    "SearchQA-ReZero-v0": {"reward_preset": "rezero"},
    "SearchQA-NoRetry-v0": {"reward_preset": "rezero-no-retry"},
    "SearchQA-EM-v0": {"reward_preset": "em"},
    "SearchQA-F1-v0": {"reward_preset": "f1"},
    "SearchQA-Dense-v0": {"reward_mode": "dense"},
    "SearchQA-SingleHop-v0": {"hops": 1},
    "SearchQA-MultiHop-v0": {"hops": 2},
    "SearchQA-Lucene-v0": {"backend": "pyserini"},
    "SearchQA-RankBM25-v0": {"backend": "rank_bm25"},
    "SearchQA-Synthetic-v0": {"task": "synthetic"},
}


def register_all() -> None:
    """Register every SearchQA id with Gymnasium (idempotent)."""
    for env_id, kwargs in VARIANTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=kwargs, disable_env_checker=False)
