"""The leaderboard issue's four experiments, each one command, sized for a 2-core CPU.

    python -m benchmarks.experiments persistence   # ReZero: rezero vs rezero-no-retry, same trainer
    python -m benchmarks.experiments passk         # pass@k to k=64: SFT vs PPO, GRPO, NSR, W-REINFORCE
    python -m benchmarks.experiments diversity     # query diversity across samples (reuses passk samples)
    python -m benchmarks.experiments hacking       # rezero vs rezero-strict: probes, then an RL trainer
    python -m benchmarks.experiments passk --quick # tiny budgets, about a minute, for tests

Every policy starts from one SFT checkpoint of the tiny model (``common.ensure_sft_start``);
every run is a ``benchmarks.recipes`` config trained as a plain ``python -m agents.train``
command (written to the results), at most ``--jobs`` at a time with one torch thread each.
Runs and evaluated episodes are cached under ``--runs`` (a rerun reuses a finished run or
evaluation), so ``diversity`` costs no extra rollouts once ``passk`` has run, and ``hacking``
reuses ``persistence``'s ``ppo-rezero`` run.

Intervals are 95% percentile bootstraps over *questions* (samples of one question are not
independent); differences are paired bootstraps over the same questions. Modules: ``common``
(scales, training the arms, evaluating them, outputs) and one module per experiment.
"""
