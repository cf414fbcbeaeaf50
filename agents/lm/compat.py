"""What differs between the transformers versions we support (see ``TRANSFORMERS_RANGE``).

Recent 5.x releases take the KV cache as ``cache`` in a model's forward (5.24 here) where
older ones take ``past_key_values`` (5.17); the new releases still accept the old name but warn
that it is deprecated, so the argument is chosen from the model's signature. Outputs name it
the same way. Everything else the policy uses (``DynamicCache``, ``Cache(layers=...)``,
``DynamicLayer``, ``logits_to_keep``) is the same across the range.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

# Tested by `make test-transformers-range` at both ends; pyproject.toml declares the same range.
TRANSFORMERS_RANGE = (">=5.17", "<6")


@lru_cache(maxsize=64)
def _cache_argument(model_class: Any) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword argument that hands ``cache`` to ``model``'s forward on this version.

    A peft wrapper forwards keywords to its base model, whose signature decides.
    """
    base: Any = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_class: Any = type(base)
    return {_cache_argument(model_class): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``output.cache``, or ``past_key_values`` before 5.2x)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
