"""The field's questions about RL on search agents, each one command, sized for a 2-core CPU.

    python -m benchmarks.experiments persistence   # ReZero: with vs without the retry term, same trainer
    python -m benchmarks.experiments passk         # pass@k: SFT start vs PPO, GRPO, NSR, W-REINFORCE
    python -m benchmarks.experiments diversity     # query diversity across samples (reuses passk samples)
    python -m benchmarks.experiments hacking       # rezero vs rezero-strict: probes, then an RL trainer
    python -m benchmarks.experiments passk --scale smollm2   # SmolLM2-135M, two seeds per arm
    python -m benchmarks.experiments passk --quick # tiny budgets, about a minute, for tests
    python -m benchmarks.experiments status --scale smollm2  # which runs exist, trains nothing

A scale (``scales``) fixes the model, episodes, budgets, seeds and the arms of each question:
``full`` is the tiny model, ``smollm2`` SmolLM2-135M on the cheap CPU path with checkpoints
chosen on dev, ``quick`` a plumbing check. Every policy of a scale starts from one SFT
checkpoint (``common.ensure_sft_start``); every run is a ``benchmarks.recipes`` config trained
as a plain ``python -m agents.train --resume`` command (written to the results), at most
``--jobs`` at a time with one torch thread each. Runs and evaluated episodes are cached under
``--runs``: a rerun reuses a finished run or evaluation and resumes a run stopped half-way, so
a campaign can span sessions; ``diversity`` costs no extra rollouts once ``passk`` has run, and
the arms of one question serve the others where they coincide (at the smollm2 scale, GRPO is
an arm of persistence, passk and hacking, and the README's learning runs are these runs).

Intervals are 95% percentile bootstraps over *questions* (samples of one question are not
independent); differences are paired bootstraps over the same questions; an arm's seeds are
averaged per question. Modules: ``scales`` (scales, data, the runs' configs), ``common``
(training the arms, evaluating them, statistics, outputs) and one module per experiment.
"""
