"""Training algorithms, one family per file, and the registry that maps ``--algo`` to them.

- ``sft``: masked NLL of oracle demonstrations or of the policy's own successes (``sft.py``).
- ``ppo``: clipped surrogate with GAE over action tokens, a value head and KL (``ppo.py``).
- ``grpo``, ``nsr``, ``wreinforce``: the clipped REINFORCE family, which differs only in the
  advantage of an episode: group-normalized reward, ``r - 1``, or ``+lambda / -1`` (``pg.py``).

Each algorithm owns its defaults (``resolve``), its checks (``validate``), its loss and
advantages (``step``). Nothing outside this package branches on the algorithm's name. The
registry below is the one list of names: ``TrainConfig`` and the CLI take theirs from it, so a
new advantage-only algorithm is a class (in ``pg.py``) and a line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agents.algos.base import Algorithm

if TYPE_CHECKING:
    from agents.config import TrainConfig

# name -> "module:class"; modules are imported on first use, so the CLI stays cheap.
_REGISTRY = {
    "sft": "agents.algos.sft:SFT",
    "ppo": "agents.algos.ppo:PPO",
    "grpo": "agents.algos.pg:GRPO",
    "nsr": "agents.algos.pg:NSR",
    "wreinforce": "agents.algos.pg:WReinforce",
}
ALGORITHMS = tuple(_REGISTRY)


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"algo must be one of {ALGORITHMS}, got {name!r}")
    module, _, cls = _REGISTRY[name].partition(":")
    algorithm: type[Algorithm] = getattr(importlib.import_module(module), cls)
    return algorithm


def resolve(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` checked by its algorithm, every field left at ``None`` set to the algorithm's default.

    Raises:
        ValueError: for settings the algorithm cannot run with (e.g. GRPO with groups of one).
    """
    algorithm = get_algorithm(cfg.algo)
    algorithm.validate(cfg)
    return algorithm.resolve(cfg)


__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm", "resolve"]
