"""Your own data, end to end (issue 11): one way to name a jsonl dataset, taken by the env, play,
index, train config, leaderboard and experiments; the task cache follows file contents; the
README's first snippet ends correct; the leaderboard's help and table say what they use."""

from __future__ import annotations

import argparse
import io
import json
import re
import warnings
from argparse import Namespace
from pathlib import Path

import gymnasium as gym
import pytest

import searchenv  # noqa: F401
from agents.config import TrainConfig, config_from_args
from benchmarks import leaderboard
from benchmarks.evaluation import Evaluation, RunConfig, resolve_agent
from searchenv import cli
from searchenv.resources import shared_task
from tasks.dataset import DatasetSpec, DatasetSpecError, dataset_from_options, task_arguments

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::tasks.evidence.NoEvidenceWarning")

CORPUS = [
    {"id": "paris", "contents": '"Paris"\nParis is the capital of France.'},
    {"id": "berlin", "contents": '"Berlin"\nBerlin is the capital of Germany.'},
    {"id": "rome", "contents": '"Rome"\nRome is the capital of Italy.'},
]
QUESTIONS = [
    {
        "id": 1,
        "question": "What is the capital of France?",
        "golden_answers": ["Paris"],
        "metadata": {"ids": ["paris"]},
    },
    {
        "id": 2,
        "question": "What is the capital of Germany?",
        "golden_answers": ["Berlin"],
        "metadata": {"ids": ["berlin"]},
    },
    {
        "id": 3,
        "question": "What is the capital of Italy?",
        "golden_answers": ["Rome"],
        "metadata": {"ids": ["rome"]},
    },
]


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny FlashRAG dataset in tmp_path/capitals, evidence under metadata.ids; its own index home."""
    monkeypatch.setenv("SEARCHENV_HOME", str(tmp_path / "home"))
    folder = tmp_path / "capitals"
    write(folder / "corpus.jsonl", CORPUS)
    write(folder / "train.jsonl", QUESTIONS[:1])
    write(folder / "test.jsonl", QUESTIONS[1:])
    DatasetSpec(
        "capitals",
        str(folder / "corpus.jsonl"),
        (("train", str(folder / "train.jsonl")), ("test", str(folder / "test.jsonl"))),
        "metadata.ids",
    ).to_file(folder / "dataset.json")
    return folder


def path_options(folder: Path) -> list[str]:
    return [
        "--task",
        "jsonl",
        "--corpus",
        str(folder / "corpus.jsonl"),
        "--questions",
        f"test={folder / 'test.jsonl'}",
    ]


# ----------------------------------------------------------------------------- naming a dataset
def test_spec_file_and_path_options_name_the_same_dataset(data: Path) -> None:
    spec = json.loads((data / "dataset.json").read_text())
    assert spec == {
        "name": "capitals",
        "corpus": "corpus.jsonl",
        "questions": {"train": "train.jsonl", "test": "test.jsonl"},
        "evidence_field": "metadata.ids",
    }
    from_file = dataset_from_options(dataset=str(data / "dataset.json"))
    inline = dataset_from_options(
        corpus=str(data / "corpus.jsonl"),
        questions=f"train={data / 'train.jsonl'},test={data / 'test.jsonl'}",
        evidence_field="metadata.ids",
    )
    assert from_file == inline
    task = shared_task(*task_arguments("jsonl", from_file)[:1], **from_file.task_kwargs())  # type: ignore[union-attr]
    assert task.name == "capitals" and task.questions("test")[0].supporting_doc_ids == ("berlin",)


@pytest.mark.parametrize(
    ("options", "task", "message"),
    [
        ({}, "jsonl", "--task jsonl needs its files"),
        ({"corpus": "c.jsonl"}, "jsonl", "--corpus and --questions go together"),
        ({"corpus": "c.jsonl", "questions": "test"}, "jsonl", "is not SPLIT=PATH"),
        ({"corpus": "c.jsonl", "questions": "test=a,test=b"}, "jsonl", "names a split twice"),
        ({"corpus": "c.jsonl", "questions": "test=a"}, "factbook", "add --task jsonl"),
        ({"dataset": "missing.json"}, "jsonl", "missing.json: no such dataset spec file"),
        ({"evidence_field": "x.y"}, "jsonl", "--evidence-field needs a dataset"),
    ],
)
def test_dataset_options_that_name_no_dataset_are_clear_errors(
    options: dict, task: str, message: str
) -> None:
    with pytest.raises(DatasetSpecError, match=re.escape(message)):
        task_arguments(task, dataset_from_options(**options))


def test_spec_file_problems_name_the_file_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "dataset.json"
    spec.write_text(json.dumps({"corpus": "c.jsonl", "questions": {"test": "t.jsonl"}, "evidence": "x"}))
    with pytest.raises(DatasetSpecError, match=r"dataset\.json: unknown key\(s\) \['evidence'\]"):
        DatasetSpec.from_file(spec)
    spec.write_text(json.dumps({"corpus": "c.jsonl"}))
    with pytest.raises(DatasetSpecError, match=r"needs 'corpus' \(a path\) and 'questions'"):
        DatasetSpec.from_file(spec)


# ----------------------------------------------------------------------------- every entry point
def test_env_takes_the_dataset_by_task_kwargs(data: Path) -> None:
    kwargs = {"corpus_path": str(data / "corpus.jsonl"), "splits": {"test": str(data / "test.jsonl")}}
    env = gym.make(
        "SearchQA-v0", task="jsonl", task_kwargs={**kwargs, "evidence_field": "metadata.ids"}, split="test"
    )
    env.reset(seed=0, options={"question_id": "2"})
    info = env.step("<search>capital of Germany</search>")[-1]
    assert info["hits"][0]["doc_id"] == "berlin"
    info = env.step("<answer>Berlin</answer>")[-1]
    assert info["correct"] and info["reward_breakdown"]["evidence"] == 1.0


def test_play_takes_the_dataset(data: Path) -> None:
    args = cli.build_parser().parse_args(
        ["play", "--task", "jsonl", "--dataset", str(data / "dataset.json"), "--question-id", "2"]
    )
    out = io.StringIO()
    assert cli.play(args, stdin=io.StringIO("s capital of Germany\na Berlin\n"), stdout=out) == 0
    assert "Question: What is the capital of Germany?" in out.getvalue() and "Correct: True" in out.getvalue()
    bad = cli.build_parser().parse_args(["play", "--task", "jsonl"])
    with pytest.raises(ValueError, match="--task jsonl needs its files"):  # main() makes it one line
        cli.play(bad, stdin=io.StringIO(""), stdout=io.StringIO())


def test_index_build_and_info_take_the_dataset(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = path_options(data)
    assert cli.main(["index", "build", *options, "--no-progress"]) == 0
    assert cli.main(["index", "info", *options]) == 0
    assert json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")["counts"]["n_docs"] == 3
    capsys.readouterr()
    assert cli.main(["index", "info", "--task", "jsonl"]) == 2
    assert capsys.readouterr().err.startswith("error: --task jsonl needs its files")


def test_train_config_passes_the_dataset_as_task_kwargs(data: Path) -> None:
    assert "task_kwargs" not in TrainConfig().env_kwargs()  # the default env is unchanged
    cfg = config_from_args(["--task", "jsonl", "--dataset", str(data / "dataset.json")])
    kwargs = cfg.env_kwargs("test")
    assert kwargs["task"] == "jsonl" and kwargs["task_kwargs"]["name"] == "capitals"
    assert kwargs["task_kwargs"]["evidence_field"] == "metadata.ids"
    inline = config_from_args(path_options(data))
    assert inline.env_kwargs()["task_kwargs"]["splits"] == {"test": str(data / "test.jsonl")}
    with pytest.raises(ValueError, match="--task jsonl needs its files"):
        TrainConfig(task="jsonl")


def test_train_and_evaluate_on_a_jsonl_dataset(data: Path, tmp_path: Path) -> None:
    """One SFT step of the tiny model (its tokenizer learned from this corpus), then an evaluation."""
    import torch

    from agents import checkpoint as ckpt
    from agents.evaluate import evaluate_checkpoint
    from agents.train import train

    torch.set_num_threads(1)
    run = train(
        config_from_args(
            [
                *("--dataset", str(data / "dataset.json"), "--task", "jsonl", "--split", "train"),
                *("--algo", "sft", "--steps", "1", "--sft-batch-size", "1", "--max-turns", "3"),
                *("--max-new-tokens", "8", "--backend", "rank_bm25", "--num-envs", "1", "--threads", "1"),
                *("--eval-every", "1", "--eval-split", "test", "--eval-episodes", "2", "--no-progress"),
                *("--out", str(tmp_path / "run"), "--device", "cpu"),
            ]
        )
    )
    record = ckpt.read_metrics(run / "metrics.jsonl")[0]
    assert record["loss"] > 0 and record["action_tokens"] > 0 and "eval_em" in record
    result = evaluate_checkpoint(run, "test", num_envs=1, progress=False, device="cpu")
    assert result["n"] == 2 and 0.0 <= result["em"] <= 1.0


def test_leaderboard_runs_a_jsonl_task_with_path_options(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "board"
    argv = [
        *("--agents", "random", "oracle", "--tasks", "jsonl", "--corpus", str(data / "corpus.jsonl")),
        *("--questions", f"train={data / 'train.jsonl'},test={data / 'test.jsonl'}"),
        *("--evidence-field", "metadata.ids", "--out", str(out), "--no-plots", "--no-progress"),
    ]
    assert leaderboard.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    oracle = next(p for p in results["pairs"] if p["agent"] == "oracle")
    assert oracle["task"] == "capitals" and oracle["summary"]["em"]["mean"] == 1.0
    assert oracle["summary"]["reward_components"]["evidence"] == 1.0  # the oracle searched for its evidence
    table = (out / "leaderboard.md").read_text()
    assert (
        "## capitals" in table
        and "| reward (rezero-strict) |" in table
        and "evidence from metadata.ids" in table
    )
    assert (out / "oracle__capitals.json").is_file()


def test_evaluations_are_keyed_by_dataset_content_not_paths(data: Path, tmp_path: Path) -> None:
    def key(folder: Path) -> str:
        spec = DatasetSpec.from_file(folder / "dataset.json")
        config = RunConfig(env_kwargs={"task_kwargs": spec.task_kwargs()})
        return Evaluation(resolve_agent("bm25"), "jsonl", config, tmp_path).key

    moved = tmp_path / "moved"
    moved.mkdir()
    for file in data.iterdir():
        (moved / file.name).write_bytes(file.read_bytes())
    assert key(moved) == key(data)
    write(moved / "test.jsonl", [{**QUESTIONS[1], "golden_answers": ["Bonn"]}])
    assert key(moved) != key(data)


def test_experiments_take_the_dataset(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.experiments import __main__ as experiments_cli
    from benchmarks.experiments import hacking
    from benchmarks.experiments.common import Context
    from benchmarks.experiments.scales import QUICK, Data, rl_config

    ctx = Context(
        QUICK, tmp_path / "runs", tmp_path / "results", 1, Data({"dataset": str(data / "dataset.json")})
    )
    assert ctx.data.task == "jsonl" and ctx.data.kinds(QUICK) is None and ctx.data.label == "capitals"
    cfg = rl_config("ppo-rezero", QUICK, ctx.runs, ctx.data)
    assert cfg.env_kwargs()["task_kwargs"]["name"] == "capitals" and cfg.kinds is None
    monkeypatch.setattr(hacking, "PROBES", ("bm25", "repeat-query"))
    rows = hacking.probe_rows(ctx)
    assert {len(r) for r in rows.values()} == {2}  # both test questions of the dataset
    seen: dict[str, Namespace] = {}

    def fake_run(context: Context) -> dict:
        seen["ctx"] = Namespace(runs=context.runs, results=context.results, data=context.data)
        return {}

    monkeypatch.setitem(experiments_cli.RUNNERS, "hacking", fake_run)
    assert experiments_cli.main(["hacking", "--quick", "--dataset", str(data / "dataset.json")]) == 0
    assert seen["ctx"].runs == Path("runs/experiments_quick_capitals")
    assert seen["ctx"].results == Path("benchmarks/results/quick/capitals")


# ----------------------------------------------------------------------------- the task cache
def test_task_cache_follows_file_contents(data: Path) -> None:
    kwargs = {"corpus_path": str(data / "corpus.jsonl"), "splits": {"test": str(data / "test.jsonl")}}
    first = shared_task("jsonl", **kwargs)
    assert shared_task("jsonl", **kwargs) is first  # unchanged files: the same object
    assert first.questions("test")[0].answers == ("Berlin",)
    write(data / "test.jsonl", [{**QUESTIONS[1], "golden_answers": ["Bonna!"]}, QUESTIONS[2]])  # same size
    edited = shared_task("jsonl", **kwargs)
    assert edited is not first and edited.questions("test")[0].answers == ("Bonna!",)


# ----------------------------------------------------------------------------- the first minutes
def test_readme_opening_snippet_asks_a_test_question_and_ends_correct(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)  # type: ignore[union-attr]
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(snippet, "README.md", "exec"), namespace)
    info = namespace["info"]
    assert info["correct"] is True and namespace["reward"] == pytest.approx(7.55)  # type: ignore[index]
    assert capsys.readouterr().out.startswith("True 7.55")
    assert "source .venv/bin/activate" in readme and ".venv/bin/searchenv" in readme


def test_leaderboard_help_describes_every_option_with_its_default() -> None:
    parser = leaderboard.build_parser()
    for action in parser._actions:
        if action.default is argparse.SUPPRESS:  # --help, --debug
            continue
        assert action.help, action.dest
        help_text = parser.formatter_class(parser.prog)._get_help_string(action) or ""  # type: ignore[attr-defined]
        assert action.required or "default" in help_text, action.dest
