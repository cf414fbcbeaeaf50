"""RL's Razor: RL forgets less than SFT, and forgetting grows with the KL to the start on the new task.

From the same SFT start, two ways to gain on the new task (factbook): more SFT on oracle
demonstrations (``sft-more``: the SFT recipe continued, a checkpoint and a dev evaluation every
``razor_every`` steps) and GRPO (the scale's GRPO runs, every seed, every kept checkpoint).
Every checkpoint and the start are measured on the same items:

- new task: greedy EM on ``razor_questions`` dev questions; KL(checkpoint || start) on its own
  sampled episodes of those questions (``benchmarks.forgetting.new_task_kl``);
- held-out text: mean token NLL of State of the Union passages (no run trains on them);
- another task: greedy search EM on State of the Union test questions (``tasks.sotu``);
- closed-book answers to those questions (the ``direct`` baseline), and whether each equals
  the untuned model's answer: the prior's knowledge, kept or not.

Forgetting on each measure is the start's value minus the checkpoint's (NLL: the rise), paired
over items. At matched new-task EM (each GRPO run's dev-chosen checkpoint against the sft-more
checkpoint closest to it in dev EM) the two are compared with paired intervals; over all
checkpoints, forgetting is fitted against KL (least squares; the slope's interval a bootstrap
over checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import recipes
from benchmarks.evaluation import (
    AgentSpec,
    Evaluation,
    RunConfig,
    interval,
    per_question,
    resolve_agent,
    run_evaluations,
)
from benchmarks.experiments.common import Context, payload, run_trainings, scale_note, write_outputs
from benchmarks.experiments.scales import env_kwargs, razor_sft_config
from benchmarks.tables import cell, table
from searchenv.metrics import paired_bootstrap_diff
from tasks.storage import atomic_write_json

MEASURES = ("new_task_em", "kl_to_start", "text_nll", "sotu_em", "closed_book_agreement")
# Forgetting: how much worse than the start (a rise in NLL, a drop in the others).
FORGETTING = {"text_nll": +1.0, "sotu_em": -1.0, "closed_book_agreement": -1.0}


def checkpoints(ctx: Context) -> dict[str, Path]:
    """The start and every kept checkpoint of sft-more and of each GRPO run, by label."""
    from agents.checkpoint import list_checkpoints
    from agents.weights import resolve_checkpoint

    found = {"start": resolve_checkpoint(ctx.runs / "sft")}
    for run in ("sft-more", *ctx.scale.run_names(["grpo"])):
        for step, path in list_checkpoints(ctx.runs / run):
            found[f"{run}.{step}"] = path  # the evaluation engine's label alphabet has no "@"
    return found


def sotu_data(ctx: Context) -> dict[str, Any]:
    """The State of the Union task's loader arguments (the dataset written once under the runs)."""
    from tasks import sotu
    from tasks.dataset import dataset_from_options, task_arguments

    folder = ctx.runs / "data" / "sotu"
    if not (folder / "dataset.json").is_file():
        sotu.write(folder)
    return task_arguments("jsonl", dataset_from_options(dataset=str(folder / "dataset.json")))[1]


def _rows(folder: Path, agents: Sequence[AgentSpec], task: str, config: RunConfig) -> dict[str, list[dict]]:
    evaluations = [Evaluation(agent, task, config, folder) for agent in agents]
    records = run_evaluations(evaluations, workers=1, progress=False)
    return {e.agent.label: record["rows"] for e, record in zip(evaluations, records, strict=True)}


def measure(ctx: Context, found: Mapping[str, Path]) -> dict[str, dict[str, dict[str, float]]]:
    """Per measure, per checkpoint label, per item (question or text): the value."""
    from agents.weights import load_checkpoint_model, load_policy
    from benchmarks import forgetting
    from searchenv.questions import sample_question_ids, select_questions

    scale, n = ctx.scale, ctx.scale.razor_questions
    cache = ctx.runs / "samples" / "razor"
    agents = [resolve_agent(f"{label}={path}") for label, path in found.items()]
    dev = RunConfig(
        split="dev",
        max_questions=n,
        num_envs=scale.num_envs,
        greedy=True,
        env_kwargs=env_kwargs(scale, "rezero-strict", ctx.data),
    )
    values: dict[str, dict[str, dict[str, float]]] = {m: {} for m in MEASURES}
    for label, rows in _rows(cache / "dev", agents, ctx.data.task, dev).items():
        values["new_task_em"][label] = {qid: float(v) for qid, v in per_question(rows, "correct").items()}
    sotu = sotu_data(ctx)
    sotu_env = {**env_kwargs(scale, "rezero-strict"), "task_kwargs": sotu}
    sotu_env.pop("kinds", None)
    test = RunConfig(split="test", max_questions=n, num_envs=scale.num_envs, greedy=True, env_kwargs=sotu_env)
    for label, rows in _rows(cache / "sotu", agents, "jsonl", test).items():
        values["sotu_em"][label] = {qid: float(v) for qid, v in per_question(rows, "correct").items()}
    untuned = "smollm2-135m" if scale.model != "tiny" else "tiny"
    direct = [
        resolve_agent(f"direct={untuned}"),
        *(resolve_agent(f"direct={path}") for path in found.values()),
    ]
    closed = _rows(cache / "closed_book", direct, "jsonl", test)
    prior = {r["qid"]: _normalized(r["answer"]) for r in closed[direct[0].label]}
    for label, spec in zip(found, direct[1:], strict=True):
        values["closed_book_agreement"][label] = {
            r["qid"]: float(_normalized(r["answer"]) == prior[r["qid"]]) for r in closed[spec.label]
        }
    texts = forgetting.held_out_texts(n)
    kinds = ctx.data.kinds(scale)
    questions = select_questions(
        ctx.data.task,
        "dev",
        hops=1,
        kinds=kinds.split(",") if kinds else None,
        task_kwargs=ctx.data.task_kwargs,
    )
    question_ids = sample_question_ids(questions, n, 0)
    reference, _ = load_checkpoint_model(found["start"], device="cpu")
    reference.eval()
    for label, path in found.items():
        stored = cache / "model" / f"{label}.json"
        fingerprint = next(a.fingerprint for a in agents if a.label == label)
        record = _read(stored, fingerprint)
        if record is None:
            # One load serves both: the sampling policy's model also scores the held-out text.
            policy = load_policy(path, greedy=False, seed=0, device="cpu")
            kl = forgetting.new_task_kl(
                policy,
                reference,
                {**env_kwargs(scale, "rezero-strict", ctx.data), "split": "dev"},
                question_ids,
                num_envs=scale.num_envs,
            )
            record = {
                "fingerprint": fingerprint,
                "kl": kl["per_question"],
                "nll": dict(enumerate(forgetting.text_nll(policy.model, policy.tokenizer, texts))),
            }
            atomic_write_json(stored, record)
        values["kl_to_start"][label] = {str(k): float(v) for k, v in record["kl"].items()}
        values["text_nll"][label] = {str(k): float(v) for k, v in record["nll"].items()}
    return values


def _normalized(answer: Any) -> str:
    from searchenv.rewards.normalize import answer_tokens

    return " ".join(answer_tokens(str(answer))) if answer is not None else ""


def _read(path: Path, fingerprint: str) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("fingerprint") == fingerprint else None


def forgetting_of(
    values: Mapping[str, Mapping[str, Mapping[str, float]]], label: str, measure: str
) -> dict[str, float]:
    """Paired (checkpoint - start) on ``measure``'s items, signed so that > 0 means forgotten."""
    sign = FORGETTING[measure]
    start, own = values[measure]["start"], values[measure][label]
    items = sorted(set(start) & set(own))
    return paired_bootstrap_diff(
        [sign * own[i] for i in items], [sign * start[i] for i in items], seed=0
    ).to_dict()


def slope_fit(
    points: Sequence[tuple[float, float]], n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Least-squares slope of y on x with a 95% bootstrap interval over the points.

    >>> fit = slope_fit([(0.0, 0.0), (1.0, 1.0), (2.0, 2.1), (3.0, 2.9)], n_resamples=200)
    >>> round(fit["slope"], 2), fit["n"]
    (0.98, 4)
    """
    x, y = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    slope = float(np.polyfit(x, y, 1)[0]) if len(points) >= 2 and np.ptp(x) > 0 else float("nan")
    rng, draws = np.random.default_rng(seed), []
    for _ in range(n_resamples):
        index = rng.integers(0, len(points), len(points))
        if np.ptp(x[index]) > 0:
            draws.append(np.polyfit(x[index], y[index], 1)[0])
    low, high = (float(np.percentile(draws, q)) for q in (2.5, 97.5)) if draws else (float("nan"),) * 2
    return {"slope": slope, "low": low, "high": high, "n": len(points)}


def run(ctx: Context) -> dict[str, Any]:
    """Train sft-more and the GRPO runs, measure every checkpoint, write ``results/razor``."""
    started = time.perf_counter()
    runs = ctx.train(("grpo",))
    more = razor_sft_config(ctx.scale, ctx.runs, ctx.data)
    wall = run_trainings([more], ctx.jobs)[Path(more.out).name]
    runs["sft-more"] = {"command": recipes.train_command(more), "wall_seconds": wall}
    found = checkpoints(ctx)
    values = measure(ctx, found)
    summary = {
        m: {label: interval(list(v.values())) for label, v in per.items()} for m, per in values.items()
    }
    forgotten = {
        m: {label: forgetting_of(values, label, m) for label in found if label != "start"} for m in FORGETTING
    }
    matched = match_em(ctx, values)
    fits = {
        m: slope_fit(
            [(summary["kl_to_start"][label]["mean"], forgotten[m][label]["mean"]) for label in forgotten[m]]
        )
        for m in FORGETTING
    }
    out = ctx.out("razor")
    header = ["checkpoint", *MEASURES]
    rows = [[label, *[cell(summary[m][label], 3) for m in MEASURES]] for label in found]
    md = [
        "# RL's Razor: forgetting of SFT and GRPO against their KL to the start",
        "",
        scale_note(
            ctx,
            ctx.scale.razor_questions,
            " per measure (dev questions for the new task, SotU test questions and passages for the rest)",
        ),
        "",
        *table(header, rows),
        "",
        "At matched new-task EM (GRPO's dev-chosen checkpoint against the sft-more checkpoint closest "
        "in dev EM), forgetting > 0 means worse than the start; GRPO - SFT paired over items:",
        "",
        *table(
            ["pair", "measure", "GRPO", "SFT", "GRPO - SFT"],
            [
                [p["pair"], m, cell(p[m]["grpo"]), cell(p[m]["sft"]), cell(p[m]["difference"])]
                for p in matched
                for m in FORGETTING
            ],
        ),
        "",
        "Forgetting against KL(checkpoint || start) on the new task, over all checkpoints "
        "(least-squares slope, bootstrap over checkpoints):",
        "",
        *table(
            ["measure", "slope", "95% interval", "checkpoints"],
            [
                [m, f"{f['slope']:.4f}", f"[{f['low']:.4f}, {f['high']:.4f}]", str(f["n"])]
                for m, f in fits.items()
            ],
        ),
        "",
        "![razor](razor.png)",
    ]
    from benchmarks.plotting import plot_razor

    points = {
        m: {
            label: (summary["kl_to_start"][label]["mean"], forgotten[m][label]["mean"])
            for label in forgotten[m]
        }
        for m in FORGETTING
    }
    plot_razor(points, fits, out / "razor.png")
    figures = {
        "runs": runs,
        "checkpoints": {k: str(v) for k, v in found.items()},
        "measures": summary,
        "forgetting": forgotten,
        "matched": matched,
        "fits": fits,
    }
    results = payload(ctx, started, figures)
    write_outputs(out, results, md)
    return results


def match_em(ctx: Context, values: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict[str, Any]]:
    """Each GRPO run's dev-chosen checkpoint against the sft-more checkpoint nearest in dev EM."""
    from agents.checkpoint import dev_selected_checkpoint

    em = {label: float(np.mean(list(v.values()))) for label, v in values["new_task_em"].items()}
    sft_labels = [label for label in em if label.startswith("sft-more.")]
    pairs = []
    for run in ctx.scale.run_names(["grpo"]):
        try:
            grpo = f"{run}.{dev_selected_checkpoint(ctx.runs / run).step}"
        except FileNotFoundError:
            grpo = max(
                (label for label in em if label.startswith(f"{run}.")),
                key=lambda label: int(label.rsplit(".", 1)[1]),
                default="",
            )
        if grpo not in em or not sft_labels:
            continue
        sft = min(sft_labels, key=lambda label: abs(em[label] - em[grpo]))
        pair: dict[str, Any] = {"pair": f"{grpo} vs {sft}", "em": {"grpo": em[grpo], "sft": em[sft]}}
        for m in FORGETTING:
            sign, a, b = FORGETTING[m], values[m][grpo], values[m][sft]
            items = sorted(set(a) & set(b))
            pair[m] = {
                "grpo": forgetting_of(values, grpo, m),
                "sft": forgetting_of(values, sft, m),
                "difference": paired_bootstrap_diff(
                    [sign * a[i] for i in items], [sign * b[i] for i in items], seed=0
                ).to_dict(),
            }
        pairs.append(pair)
    return pairs
