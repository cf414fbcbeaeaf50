"""The cheap update path (``--train-layers K``) is exact: same log-probs, loss and gradients.

Every comparison here is between two computations of the same quantity in one process, so it
holds on any CPU. Tolerances: the two paths run the same fp32 operations on inputs that differ
only in the summation order of the frozen layers below (one batched pass against the rollout's
incremental prefill and decode steps, or the decoder's own attention call against ours). That
is ~1e-6 relative per layer; 1e-4 of the quantity's scale leaves a wide margin for torch's
other kernels (AVX-512, or none with ATEN_CPU_CAPABILITY=default) and still fails on any real
misalignment, which moves log-probs by 1e-1 or more.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from agents.algos import resolve
from agents.config import TrainConfig
from agents.lm.models import load_model
from agents.lm.policy import LMPolicy
from agents.lm.trajectory import pad_batch, trajectories_from
from agents.lm.trunk import bottom_forward, boundary_layer, decoder_of, freeze_trunk, with_trunk_states
from agents.rollout import run_episodes
from agents.update import forward
from searchenv.resources import shared_task

torch.set_num_threads(1)
ENV = {"split": "train", "hops": 1, "max_turns": 3, "top_k": 2, "snippet_chars": 120, "read_chars": 200}
RELATIVE = 1e-4


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    gap = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert gap <= RELATIVE * max(scale, 1e-3), f"max gap {gap:.3e} at scale {scale:.3e}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from agents.lm.models import env_vocabulary_texts

    task = shared_task("factbook")
    passages = [(p.doc_id, p.title, p.text) for p in list(task.corpus.passages())[:600]]
    questions = [q.question for q in task.questions("train")[:300]]
    texts = list(env_vocabulary_texts(passages, questions))
    return load_model("tiny", cache_dir=tmp_path_factory.mktemp("models"), corpus_texts=texts, seed=0)


@pytest.fixture(scope="module")
def smollm2() -> tuple:
    return load_model("smollm2-135m")


MODELS = ["tiny", pytest.param("smollm2", marks=pytest.mark.slow)]


def _model(request: pytest.FixtureRequest, name: str) -> tuple:
    model, tokenizer = request.getfixturevalue(name)
    return model, tokenizer


def _recorded_episodes(model, tokenizer, boundary: int, episodes: int = 4) -> list:
    # Groups of two share a prompt: the second member's prompt states come from the prompt cache.
    policy = LMPolicy(model, tokenizer, max_new_tokens=12, temperature=1.0, seed=3, record_trunk=boundary)
    results = run_episodes(policy, ENV, episodes, num_envs=4, group_size=2, seed=0, progress=False)
    assert policy.stats.shared_prompt_tokens > 0
    return trajectories_from(results)


@pytest.mark.parametrize("name", MODELS)
def test_rollout_records_the_trunk_states_a_full_pass_computes(request, name: str) -> None:
    model, tokenizer = _model(request, name)
    layers = len(decoder_of(model).layers)
    boundary = boundary_layer(model, max(1, layers // 4))
    trajectories = _recorded_episodes(model, tokenizer, boundary)
    batch = pad_batch(trajectories, pad_id=0)
    expected = bottom_forward(model, batch["input_ids"], batch["attention_mask"], boundary)
    for row, trajectory in enumerate(trajectories):
        states = trajectory.trunk_states
        length = len(trajectory.token_ids)
        # Every token is run except the episode's final end-of-turn token.
        assert length - 1 <= states.shape[0] <= length
        _close(states[: length - 1], expected[row, : length - 1])


@pytest.mark.parametrize("name", MODELS)
def test_top_layers_on_trunk_states_give_the_full_paths_loss_and_gradients(request, name: str) -> None:
    model, tokenizer = _model(request, name)
    model = copy.deepcopy(model)
    layers = len(decoder_of(model).layers)
    train_layers = max(1, layers // 4)
    boundary = boundary_layer(model, train_layers)
    freeze_trunk(model, train_layers)
    trajectories = _recorded_episodes(model, tokenizer, boundary)
    cheap_batch = pad_batch(trajectories, pad_id=0)
    plain_batch = {key: value for key, value in cheap_batch.items() if key != "trunk_states"}
    weights = torch.linspace(-1.0, 1.0, cheap_batch["input_ids"].shape[1] - 1)

    def loss_and_grads(batch: dict, use_boundary: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = forward(model, batch, temperature=1.0, boundary=use_boundary)
        loss = (out.logprobs * weights).sum() / out.action_mask.sum()
        loss.backward()
        trained = [p for p in model.parameters() if p.requires_grad]
        return loss.detach(), [p.grad.detach().clone() for p in trained]

    plain_loss, plain_grads = loss_and_grads(plain_batch, None)
    cheap_loss, cheap_grads = loss_and_grads(cheap_batch, boundary)
    _close(cheap_loss, plain_loss)
    assert len(cheap_grads) == len(plain_grads) > 0
    for cheap, plain in zip(cheap_grads, plain_grads, strict=True):
        _close(cheap, plain)
    assert max(float(g.abs().max()) for g in plain_grads) > 0  # the comparison is not of zeros

    # The rollout's own log-probs of its sampled tokens, from the cheap path.
    with torch.no_grad():
        out = forward(model, cheap_batch, temperature=1.0, boundary=boundary)
    mask = out.action_mask
    _close(out.logprobs[mask], cheap_batch["old_logprobs"][:, 1:][mask])


def test_freeze_trunk_leaves_only_the_top_layers_and_the_norm(tiny) -> None:
    model = copy.deepcopy(tiny[0])
    decoder = decoder_of(model)
    layers = len(decoder.layers)
    freeze_trunk(model, 1)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all(f"layers.{layers - 1}." in name or ".norm." in name for name in trained)
    assert not decoder.embed_tokens.weight.requires_grad
    with pytest.raises(ValueError, match="train_layers must be in"):
        boundary_layer(model, layers + 1)
    with pytest.raises(ValueError, match="train_layers must be >= 1"):
        TrainConfig(train_layers=0)


def test_fallback_pass_gives_demonstrations_their_trunk_states(tiny) -> None:
    model, tokenizer = tiny
    boundary = boundary_layer(model, 1)
    recorded = _recorded_episodes(model, tokenizer, boundary)
    stripped = [copy.copy(t) for t in recorded]
    for t in stripped:
        object.__setattr__(t, "trunk_states", None)
    computed = with_trunk_states(model, stripped, boundary, pad_id=0, micro_batch_size=3)
    for fresh, original in zip(computed, recorded, strict=True):
        length = len(original.token_ids)
        assert fresh.trunk_states.shape[0] == length
        _close(fresh.trunk_states[: length - 1], original.trunk_states[: length - 1])


@pytest.mark.parametrize("algo", ["sft", "nsr"])
def test_training_the_top_layer_moves_only_it(algo: str, tmp_path) -> None:
    from agents.checkpoint import list_checkpoints, read_metrics
    from agents.train import train
    from agents.weights import load_checkpoint_model

    options = dict(
        algo=algo, model="tiny", hops=1, max_turns=2, max_new_tokens=12, backend="rank_bm25",
        episodes_per_step=4, num_envs=4, micro_batch_size=4, threads=1, progress=False, device="cpu",
        steps=3, lr=1e-2, train_layers=1, out=str(tmp_path / "grpo"), prompt="short", snippet_chars=120,
        save_every=1, keep_last=2, sft_questions=8, sft_batch_size=4,
    )  # fmt: skip
    run = train(TrainConfig(**options))
    metrics = read_metrics(run / "metrics.jsonl")
    assert all(m.get("logprob_gap", 0.0) < 1e-4 for m in metrics)
    earlier, later = (
        load_checkpoint_model(path, dtype="float32", device="cpu")[0]
        for _, path in list_checkpoints(run)[-2:]
    )
    layers = len(decoder_of(later).layers)
    before = earlier.state_dict()
    moved = {name for name, value in later.state_dict().items() if not torch.equal(value, before[name])}
    assert moved, "nothing trained"
    assert all(f"layers.{layers - 1}." in name or name.endswith("model.norm.weight") for name in moved)


def test_score_uses_the_trunk_states(tiny) -> None:
    """The rescoring pass of a --train-layers run runs the top layers only, and agrees with rollout."""
    from agents import rl as pg

    model, tokenizer = tiny
    boundary = boundary_layer(model, 1)
    trajectories = _recorded_episodes(model, tokenizer, boundary)
    learner = SimpleNamespace(
        model=model, tokenizer=tokenizer, value_head=None, reference=None, boundary=boundary
    )
    algorithm = SimpleNamespace(logprob_temperature=lambda cfg: cfg.temperature)
    cfg = resolve(TrainConfig(algo="nsr", micro_batch_size=3, train_layers=1))
    scored = pg.score(SimpleNamespace(cfg=cfg, learner=learner, algorithm=algorithm), trajectories)
    assert scored.logprob_gap is not None and scored.logprob_gap < 1e-5
