"""Bridges from SearchQA to other training libraries.

Each bridge is one module whose heavy dependencies are imported only when it is used, so
``import searchenv`` never needs them:

- ``searchenv.integrations.trl``: TRL's ``GRPOTrainer(environment_factory=...)`` (``SearchQAToolEnv``,
  ``searchqa_reward``, ``export_dataset``); install with ``pip install -e .[trl]``.
- ``searchenv.integrations.skyrl``: a ``skyrl_gym`` text env registered as ``searchqa``; install with
  ``pip install -e .[skyrl]``.
- ``searchenv.integrations.verifiers``: ``load_environment(...)``, a verifiers (v1 API) taskset with
  per-rollout tools and the env's reward; install with ``pip install -e .[verifiers]``.
"""
