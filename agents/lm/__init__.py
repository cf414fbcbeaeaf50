"""Language-model policies: model sources, chat formatting, batched generation, trajectories.

Everything here runs offline. torch and transformers are imported lazily, so importing this
package is cheap; install them with ``pip install torch==2.13.0`` then ``pip install -e .[agents]``.

- ``agents.lm.models``: ``load_model(source)`` for ``"tiny"``, ``"smollm2-135m"`` or a local folder.
- ``agents.lm.chat``: ``ChatFormat`` turns an episode into token segments with a loss mask.
- ``agents.lm.tokens``: ``EpisodeTokens``, the one token path; ``DemonstrationPolicy`` records a
  scripted teacher's actions through it.
- ``agents.lm.policy``: ``LMPolicy``, batched KV-cached generation with per-token log-probs
  (``agents.lm.kv_cache`` holds its batched caches).
- ``agents.lm.trajectory``: ``Trajectory``, ``trajectories_from``, ``pad_batch``, ``sequence_logprobs``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ChatFormat",
    "DemonstrationPolicy",
    "EpisodeTokens",
    "LMPolicy",
    "Trajectory",
    "load_model",
    "pad_batch",
    "sequence_logprobs",
    "trajectories_from",
]

_HOMES = {
    "ChatFormat": "agents.lm.chat",
    "DemonstrationPolicy": "agents.lm.tokens",
    "EpisodeTokens": "agents.lm.tokens",
    "LMPolicy": "agents.lm.policy",
    "Trajectory": "agents.lm.trajectory",
    "trajectories_from": "agents.lm.trajectory",
    "pad_batch": "agents.lm.trajectory",
    "sequence_logprobs": "agents.lm.trajectory",
    "load_model": "agents.lm.models",
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports: `from agents.lm import LMPolicy` must not import torch at package import.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'agents.lm' has no attribute {name!r}")
