"""The LM policy: chat segments and masks, batched KV-cached generation, log-probs, trajectories."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from agents.algos import resolve
from agents.lm.chat import ChatFormat
from agents.lm.models import env_vocabulary_texts, load_model
from agents.lm.policy import LMPolicy
from agents.lm.tokens import DemonstrationPolicy
from agents.lm.trajectory import Trajectory, pad_batch, sequence_logprobs, trajectories_from
from agents.rollout import run_episodes
from searchenv.resources import shared_task

torch.set_num_threads(1)

PROMPTS = [
    "Question: What is the capital of France?",
    "Question: Which country has the larger population, Laos or Samoa?" + " Think carefully." * 5,
    "Question: What is the currency of Japan?" + " Be brief." * 11,
]
OBSERVATIONS = [
    "<information>\n[1] fr/government/000 | France — Government | Capital: Paris\n</information>",
    "<error>No complete action tag found.</error>",
    "<information>\n[1] ja/economy/002 | Japan — Economy | " + "yen " * 30 + "\n</information>",
]
ENV_KWARGS = {"split": "train", "max_turns": 3, "top_k": 2}
# Two fp32 computations of the same log-probs (batched or one sequence at a time, KV-cached decode
# or one forward pass) differ by round-off, whichever kernels torch picks on this CPU (AVX-512,
# AVX2, none): a few ulps of numbers of size <= log(vocabulary) ~ 9 on the tiny model, where an
# ulp is ~1e-6 (measured mean gaps ~2e-7). 1e-4 is ~100 ulps there, while a real error (a shifted
# position, another temperature, another token) moves log-probs by 1e-2 and more.
LOGPROB_ATOL = 1e-4
# SmolLM2: 30 layers and a 49k vocabulary accumulate more round-off; 10x the tiny model's.
SMOLLM2_LOGPROB_ATOL = 1e-3


@pytest.fixture(scope="module")
def tiny_texts() -> list[str]:
    task = shared_task("factbook")
    passages = [(p.doc_id, p.title, p.text) for p in list(task.corpus.passages())[:600]]
    questions = [q.question for q in task.questions("train")[:300]]
    return list(env_vocabulary_texts(passages, questions))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny(tiny_texts: list[str], cache_dir) -> tuple:
    return load_model("tiny", cache_dir=cache_dir, corpus_texts=tiny_texts, seed=0)


def _play_two_turns(policy: LMPolicy, indices: list[int]) -> list[list[str]]:
    first = policy.act([PROMPTS[i] for i in indices], [{"turn": 0, "slot": i} for i in indices])
    second = policy.act([OBSERVATIONS[i] for i in indices], [{"turn": 1, "slot": i} for i in indices])
    return [first, second]


def _fresh_logprobs(model, trajectories: list[Trajectory], temperature: float) -> tuple:
    batch = pad_batch(trajectories, pad_id=0)
    with torch.no_grad():
        fresh = sequence_logprobs(model, batch, temperature=temperature)
    mask = batch["action_mask"][:, 1:].bool()
    return fresh[mask], batch["old_logprobs"][:, 1:][mask]


def _as_trajectory(record, qid: str = "q") -> Trajectory:
    return Trajectory(qid, record.token_ids, record.action_mask, record.logprobs, 0.0, False, {}, 0)


# -- models -----------------------------------------------------------------------------------


def test_tiny_model_is_small_deterministic_and_cached(tiny, tiny_texts, cache_dir, tmp_path) -> None:
    model, tokenizer = tiny
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 12e6
    assert tokenizer.convert_tokens_to_ids("</search>") != tokenizer.unk_token_id  # tags are single tokens
    assert len(tokenizer.tokenize("</search>")) == 1
    again, again_tokenizer = load_model("tiny", cache_dir=tmp_path, corpus_texts=tiny_texts, seed=0)
    assert again_tokenizer.get_vocab() == tokenizer.get_vocab()
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other, _ = load_model("tiny", cache_dir=tmp_path, corpus_texts=tiny_texts, seed=1)
    assert not torch.equal(other.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert len(list(cache_dir.glob("tiny-*"))) == 1  # the second load of seed 0 built nothing new
    assert not list(tmp_path.glob(".*tmp"))  # no temp folder left behind


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model source"):
        load_model("no-such-model")


# -- chat segments ------------------------------------------------------------------------------


def test_segments_equal_one_shot_tokenization(tiny) -> None:
    _, tokenizer = tiny
    fmt = ChatFormat.from_tokenizer(tokenizer)
    turns = [
        ("<think>look it up</think><search>capital of France</search>", OBSERVATIONS[0]),
        (
            "<read>fr/government/000</read>",
            "<information>\n[fr/government/000] France\nParis\n</information>",
        ),
        (" <answer>Paris</answer>", "Answer submitted."),
    ]
    token_ids, action_mask = _demonstrated(tokenizer, PROMPTS[0], turns)
    assert token_ids == fmt.encode(fmt.render(PROMPTS[0], turns))
    assert token_ids[-1] == fmt.end_of_turn_id and action_mask[-1] == 1
    # Exactly the action tokens and their end-of-turn tokens are masked in.
    expected_actions = [fmt.action_ids(action) for action, _ in turns]
    assert sum(action_mask) == sum(map(len, expected_actions))
    runs = _mask_runs(token_ids, action_mask)
    assert runs == expected_actions


class _Script:
    """A scripted teacher that replays fixed actions."""

    name = "script"

    def __init__(self, actions: list[str]) -> None:
        self.actions = list(actions)

    def act(self, observations, infos):
        return [self.actions.pop(0) for _ in observations]

    def reset(self, indices=None) -> None:
        pass


def _demonstrated(tokenizer, prompt: str, turns: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Record a scripted conversation through DemonstrationPolicy, the SFT token path."""
    demo = DemonstrationPolicy(_Script([action for action, _ in turns]), tokenizer)
    observations = [prompt] + [observation for _, observation in turns[:-1]]
    for turn, observation in enumerate(observations):
        demo.act([observation], [{"turn": turn, "slot": 0}])
    record = demo.pop_episode(0)
    assert not any(record.logprobs)
    return record.token_ids, record.action_mask


def test_demonstrations_and_sampled_episodes_share_one_token_path(tiny) -> None:
    """A sampled episode's actions, replayed by a teacher, give back the very same tokens."""
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, max_new_tokens=12, greedy=True, seed=0)
    sampled = run_episodes(policy, ENV_KWARGS, 2, num_envs=2, seed=5, progress=False)
    fmt = ChatFormat.from_tokenizer(tokenizer)
    for result in sampled:
        assert result.tokens is not None
        actions = [action for action, _ in result.transcript[1:]]
        token_ids, action_mask = _demonstrated(
            tokenizer, result.transcript[0][1], list(result.transcript[1:])
        )
        # Sampled ids need not be the canonical encoding of their text; compare where they are.
        canonical = all(
            run == fmt.action_ids(fmt.decode_action(run[:-1]))
            for run in _mask_runs(result.tokens.token_ids, result.tokens.action_mask)
        )
        if canonical and all(fmt.decode_action(fmt.encode(a)) == a for a in actions):
            assert (token_ids, action_mask) == (result.tokens.token_ids, result.tokens.action_mask)
        assert sum(action_mask) == sum(len(fmt.action_ids(a)) for a in actions)


def _mask_runs(token_ids: list[int], action_mask: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for position, (token, mask) in enumerate(zip(token_ids, action_mask, strict=True)):
        if mask:
            if position == 0 or not action_mask[position - 1]:
                runs.append([])
            runs[-1].append(token)
    return runs


# -- generation -------------------------------------------------------------------------------


SHORT_ACTION = "<search>capital of France</search><answer>Paris</answer>"
LONG_ACTION = (
    "<think>the population of both countries is in the factbook</think><search>Laos population</search>"
)


@pytest.fixture(scope="module")
def trained(tiny_texts, cache_dir) -> tuple:
    """A tiny model taught two actions that run past their first closing tag, of unequal length."""
    model, tokenizer = load_model("tiny", cache_dir=cache_dir, corpus_texts=tiny_texts, seed=0)
    fmt = ChatFormat.from_tokenizer(tokenizer)
    targets = [(PROMPTS[0], SHORT_ACTION), (PROMPTS[1], LONG_ACTION + "<answer>Laos</answer>")]
    sequences = [torch.tensor([fmt.prompt_ids(p) + fmt.action_ids(a)]) for p, a in targets]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(120):
        sequence = sequences[step % 2]
        loss = model(input_ids=sequence, labels=sequence).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, tokenizer


def test_generation_stops_at_the_first_closing_tag(trained) -> None:
    model, tokenizer = trained
    policy = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=40)
    actions = policy.act(PROMPTS[:2], [{"turn": 0}, {"turn": 0}])
    assert actions == ["<search>capital of France</search>", LONG_ACTION]
    end_of_turn = policy.format.end_of_turn_id
    for index, action in enumerate(actions):
        record = policy.pop_episode(index)
        assert record.token_ids[-2:] == [tokenizer.convert_tokens_to_ids("</search>"), end_of_turn]
        assert record.n_generated == len(policy.format.action_ids(action))


def test_rows_that_finish_early_leave_the_batch(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.lm.kv_cache import DecodeBatch

    model, tokenizer = trained
    compactions: list[int] = []
    original_select = DecodeBatch.select

    def counting_select(self, keep) -> None:
        compactions.append(len(keep))
        original_select(self, keep)

    monkeypatch.setattr(DecodeBatch, "select", counting_select)
    batched = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=40)
    batched_actions = _play_two_turns(batched, [0, 1, 2])
    assert compactions  # the short action's row left the batch while the long one went on
    for index in range(3):
        single = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=40)
        assert [turn[0] for turn in _play_two_turns(single, [index])] == [
            turn[index] for turn in batched_actions
        ]
        alone, together = single.pop_episode(index), batched.pop_episode(index)
        assert alone.token_ids == together.token_ids
        assert alone.logprobs == pytest.approx(together.logprobs, abs=LOGPROB_ATOL)


def test_max_new_tokens_bounds_each_action(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, max_new_tokens=5, seed=3)
    _play_two_turns(policy, [0, 1])
    for index in (0, 1):
        record = policy.pop_episode(index)
        runs = _mask_runs(record.token_ids, record.action_mask)
        assert len(runs) == 2
        for run in runs:
            assert 1 <= len(run) <= 6 and run[-1] in policy.format.stop_token_ids


def test_batched_greedy_equals_one_at_a_time(tiny) -> None:
    model, tokenizer = tiny
    batched = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=12)
    batched_actions = _play_two_turns(batched, [0, 1, 2])
    for index in range(3):
        single = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=12)
        single_actions = _play_two_turns(single, [index])
        assert [turn[0] for turn in single_actions] == [turn[index] for turn in batched_actions]
        alone, together = single.pop_episode(index), batched.pop_episode(index)
        assert alone.token_ids == together.token_ids
        assert alone.action_mask == together.action_mask
        assert alone.logprobs == pytest.approx(together.logprobs, abs=LOGPROB_ATOL)


def test_logprobs_equal_a_fresh_forward_pass(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, temperature=0.7, top_p=0.9, max_new_tokens=16, seed=5)
    _play_two_turns(policy, [0, 1, 2])
    trajectories = [_as_trajectory(policy.pop_episode(i)) for i in range(3)]
    fresh, recorded = _fresh_logprobs(model, trajectories, policy.logprob_temperature)
    assert fresh.numel() == sum(t.n_generated for t in trajectories)
    assert torch.allclose(fresh, recorded, atol=LOGPROB_ATOL)
    assert (recorded < 0).all()


def test_action_mask_marks_exactly_the_generated_tokens(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, max_new_tokens=10, seed=2)
    actions = _play_two_turns(policy, [0, 1])
    fmt = policy.format
    for index in (0, 1):
        record = policy.pop_episode(index)
        prompt, observation = fmt.prompt_ids(PROMPTS[index]), fmt.observation_ids(OBSERVATIONS[index])
        runs = _mask_runs(record.token_ids, record.action_mask)
        expected = prompt + runs[0] + observation + runs[1]
        assert record.token_ids == expected
        assert record.action_mask == [0] * len(prompt) + [1] * len(runs[0]) + [0] * len(observation) + [
            1
        ] * len(runs[1])
        assert [fmt.decode_action(run) for run in runs] == [turn[index] for turn in actions]
        assert record.n_generated == sum(record.action_mask)
        assert all(lp == 0.0 for lp, m in zip(record.logprobs, record.action_mask, strict=True) if not m)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(tiny) -> None:
    model, tokenizer = tiny
    state = torch.random.get_rng_state()
    first = _play_two_turns(LMPolicy(model, tokenizer, seed=11, max_new_tokens=8), [0, 1])
    assert torch.equal(state, torch.random.get_rng_state())
    assert _play_two_turns(LMPolicy(model, tokenizer, seed=11, max_new_tokens=8), [0, 1]) == first
    assert _play_two_turns(LMPolicy(model, tokenizer, seed=12, max_new_tokens=8), [0, 1]) != first


def test_context_overflow_truncates_then_ends_without_crashing(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, max_new_tokens=8, max_context_tokens=256, seed=0)
    long_observation = "<information>\n" + "word " * 400 + "\n</information>"
    policy.act(["filler " * 400 + PROMPTS[0]], [{"turn": 0}])  # the prompt keeps its tail
    record = policy._slots[0].record
    assert "capital of France" in tokenizer.decode(record.token_ids)
    actions = [policy.act([long_observation], [{"turn": t}])[0] for t in range(1, 6)]
    record = policy.pop_episode(0)
    assert len(record.token_ids) <= 256
    assert record.context_exhausted and actions[-1] == ""
    assert "[... truncated]" in tokenizer.decode(record.token_ids)
    trajectory = _as_trajectory(record)
    fresh, recorded = _fresh_logprobs(model, [trajectory], 1.0)
    assert torch.allclose(fresh, recorded, atol=LOGPROB_ATOL)


def test_bad_arguments_are_clear_errors(tiny) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="temperature"):
        LMPolicy(model, tokenizer, temperature=0.0)
    with pytest.raises(ValueError, match="max_context_tokens"):
        LMPolicy(model, tokenizer, max_context_tokens=32)
    policy = LMPolicy(model, tokenizer)
    with pytest.raises(KeyError, match="slot 3"):
        policy.pop_episode(3)
    with pytest.raises(ValueError, match="same slot"):
        policy.act(["a", "b"], [{"turn": 0, "slot": 1}, {"turn": 0, "slot": 1}])
    with pytest.raises(ValueError, match="differ in length"):
        Trajectory("q", [1, 2], [0], [0.0, 0.0], 0.0, False, {}, 0)


# -- in the env -------------------------------------------------------------------------------


def test_policy_plays_full_episodes_in_the_env(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, max_new_tokens=12, seed=0, name="tiny")
    trajectories = trajectories_from(
        run_episodes(policy, ENV_KWARGS, 6, num_envs=4, group_size=2, seed=3, progress=False)
    )
    assert len(trajectories) == 6
    assert [t.group_id for t in trajectories] == [0, 0, 1, 1, 2, 2]
    for first, second in zip(trajectories[::2], trajectories[1::2], strict=True):
        assert first.question_id == second.question_id
    for trajectory in trajectories:
        assert trajectory.breakdown and isinstance(trajectory.reward, float)
        assert 1 <= len(_mask_runs(trajectory.token_ids, trajectory.action_mask)) <= 3
    fresh, recorded = _fresh_logprobs(model, trajectories, policy.logprob_temperature)
    assert torch.allclose(fresh, recorded, atol=LOGPROB_ATOL)

    ids = [trajectories[0].question_id, trajectories[4].question_id]
    chosen = run_episodes(policy, ENV_KWARGS, question_ids=ids, num_envs=2, progress=False)
    assert [t.question_id for t in chosen] == ids


def test_policy_accepts_vector_env_batches(tiny) -> None:
    model, tokenizer = tiny
    envs = gym.make_vec("SearchQA-v0", num_envs=2, vectorization_mode="sync", **ENV_KWARGS)
    observations, infos = envs.reset(seed=0)
    policy = LMPolicy(model, tokenizer, max_new_tokens=6, seed=0)
    actions = policy.act(list(observations), infos)
    envs.step(actions)
    envs.close()
    assert len(actions) == 2 and all(isinstance(a, str) for a in actions)
    assert sum(policy.pop_episode(1).action_mask) >= 1


# -- fast paths: shared prompts, fewer decodes, the trainer's view ------------------------------


def _grouped_episodes(policy: LMPolicy) -> list[Trajectory]:
    return trajectories_from(
        run_episodes(policy, ENV_KWARGS, 8, num_envs=4, group_size=4, seed=7, progress=False)
    )


def test_group_members_share_one_prompt_prefill(tiny) -> None:
    """A GRPO group prefills its prompt once; the episodes are those of a policy that never shares."""
    model, tokenizer = tiny
    shared = LMPolicy(model, tokenizer, temperature=0.8, max_new_tokens=10, seed=4)
    shared.prefix_cache.sharing = "prompts"  # histories and prefixes are the next tests'
    alone = LMPolicy(model, tokenizer, temperature=0.8, max_new_tokens=10, seed=4, prefix_cache_size=0)
    with_cache, without = _grouped_episodes(shared), _grouped_episodes(alone)
    prompt_tokens = sum(t.action_mask.index(1) for t in with_cache)
    assert shared.stats.shared_prompt_tokens == prompt_tokens * 3 // 4  # 3 of 4 members reuse it
    assert alone.stats.shared_prompt_tokens == 0
    assert shared.stats.prefill_tokens == alone.stats.prefill_tokens - shared.stats.shared_prompt_tokens
    for a, b in zip(with_cache, without, strict=True):
        assert (a.token_ids, a.logprobs) == (b.token_ids, b.logprobs)  # bitwise: the same tensors


def test_a_group_that_acts_alike_prefills_each_turn_once(tiny) -> None:
    """Greedy members act alike, so every turn's observation is prefilled by one member only."""
    model, tokenizer = tiny
    shared = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=10)
    shared.prefix_cache.sharing = "histories"  # whole equal histories only
    alone = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=10, prefix_cache_size=0)
    with_cache, without = _grouped_episodes(shared), _grouped_episodes(alone)
    assert shared.stats.shared_prompt_tokens == alone.stats.prefill_tokens * 3 // 4
    for a, b in zip(with_cache, without, strict=True):
        assert (a.token_ids, a.logprobs) == (b.token_ids, b.logprobs)


def test_prompts_share_the_prefix_before_their_question(tiny) -> None:
    """Other questions' prompts prefill only what follows the shared template and instructions.

    The episodes equal those of a policy that never shares, log-probs up to round-off (a
    prefix computed inside a longer prefill groups its sums otherwise).
    """
    model, tokenizer = tiny
    prefixed = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=10)
    alone = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=10, prefix_cache_size=0)
    runs = [
        trajectories_from(run_episodes(policy, ENV_KWARGS, 6, num_envs=3, seed=5, progress=False))
        for policy in (prefixed, alone)
    ]
    prompts = [t.token_ids[: t.action_mask.index(1)] for t in runs[1]]
    assert len({tuple(p) for p in prompts}) == len(prompts)  # every episode another question
    assert prefixed.stats.shared_prompt_tokens >= 16 * (len(prompts) - 1)
    assert prefixed.stats.prefill_tokens == alone.stats.prefill_tokens - prefixed.stats.shared_prompt_tokens
    for a, b in zip(*runs, strict=True):
        assert a.token_ids == b.token_ids
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=LOGPROB_ATOL)


def test_a_prefix_cache_shares_only_a_long_enough_proper_prefix() -> None:
    from agents.lm.kv_cache import PrefixCache

    layer = (torch.arange(8.0).reshape(1, 1, 8, 1), -torch.arange(8.0).reshape(1, 1, 8, 1))
    cache = PrefixCache(4, min_prefix=3)
    cache.put([1, 2, 3, 4, 5, 6, 7, 8], 0, [layer], logits="last", trunk=[torch.arange(8.0)[:, None]])
    assert cache.lookup([1, 2, 3, 4, 5, 6, 7, 8], version=0)[::2] == (8, "last")  # the whole prompt
    assert cache.lookup([1, 2, 9], version=0) is None  # 2 shared tokens: under min_prefix
    shared, cut, logits, trunk = cache.lookup([1, 2, 3, 4, 9, 9], version=0)
    assert (shared, logits) == (4, None) and cut[0][0].flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert trunk.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert cache.lookup([1, 2, 3, 4], version=0)[0] == 3  # the last token is always prefilled
    assert cache.lookup([1, 2, 3, 4, 9, 9], version=0, held=4) is None  # nothing beyond what it holds
    assert cache.lookup([1, 2, 3, 4, 9], version=1) is None  # other weights: nothing shared
    cache.put([1, 2, 3, 4, 5, 6, 7, 8], 1, [layer], logits="last")
    cache.sharing = "histories"
    assert cache.lookup([1, 2, 3, 4, 5, 6, 7, 8], version=1, held=5)[0] == 8
    assert cache.lookup([1, 2, 3, 4, 9], version=1) is None  # no cut prefixes
    cache.sharing = "prompts"
    assert cache.lookup([1, 2, 3, 4, 5, 6, 7, 8], version=1, held=5) is None  # only fresh prompts
    assert cache.lookup([1, 2, 3, 4, 5, 6, 7, 8], version=1)[0] == 8
    with pytest.raises(ValueError, match="sharing must be one of"):
        PrefixCache(4, sharing="everything")


def test_prefix_cache_forgets_histories_when_the_weights_change(tiny) -> None:
    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, greedy=True, max_new_tokens=4)
    for turn in range(2):
        policy.act([PROMPTS[0]], [{"turn": 0, "slot": 0}])
        if turn == 0:
            with torch.no_grad():  # what an optimizer step does: an in-place update
                model.lm_head.weight.mul_(1.0)
    assert policy.stats.shared_prompt_tokens == 0
    policy.act([PROMPTS[0]], [{"turn": 0, "slot": 0}])
    assert policy.stats.shared_prompt_tokens == len(policy.format.prompt_ids(PROMPTS[0]))


def test_closing_tags_are_found_without_decoding_every_token(tiny) -> None:
    """Decoding the action only after tokens that hold '>' finds the same stops as decoding always."""
    from agents.lm.tokens import closing_token_ids

    model, tokenizer = tiny
    may_close = closing_token_ids(tokenizer)
    assert may_close is not None
    assert all(t in may_close for t in tokenizer.convert_tokens_to_ids(["</search>", "</read>", "</answer>"]))
    assert all(t in may_close for t in range(len(tokenizer)) if ">" in tokenizer.decode([t]))
    fast = LMPolicy(model, tokenizer, temperature=1.3, max_new_tokens=24, seed=9)
    slow = LMPolicy(model, tokenizer, temperature=1.3, max_new_tokens=24, seed=9)
    slow._may_close = None
    assert _play_two_turns(fast, [0, 1, 2]) == _play_two_turns(slow, [0, 1, 2])
    for index in range(3):
        assert fast.pop_episode(index).token_ids == slow.pop_episode(index).token_ids


def test_trainer_forward_rescores_exactly_the_sampled_tokens(tiny) -> None:
    """The update's forward pass gives back the rollout's log-probs of the tokens it sampled."""
    from agents.update import forward

    model, tokenizer = tiny
    policy = LMPolicy(model, tokenizer, temperature=0.7, max_new_tokens=12, seed=1)
    trajectories = _grouped_episodes(policy)
    assert policy.stats.shared_prompt_tokens > 0
    batch = pad_batch(trajectories, pad_id=0)
    with torch.no_grad():
        out = forward(model, batch, temperature=policy.logprob_temperature)
    recorded = batch["old_logprobs"][:, 1:]
    assert torch.equal(out.action_mask, batch["action_mask"][:, 1:].bool())
    assert int(out.action_mask.sum()) == sum(t.n_generated for t in trajectories)
    assert torch.allclose(out.logprobs[out.action_mask], recorded[out.action_mask], atol=LOGPROB_ATOL)


def test_rollout_logprobs_replace_the_rescoring_pass(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """``old_logprobs="rollout"``: no forward pass, and old log-probs within fp32 noise of rescoring."""
    from types import SimpleNamespace

    from agents import rl as pg
    from agents.config import TrainConfig

    model, tokenizer = tiny
    trajectories = _grouped_episodes(LMPolicy(model, tokenizer, max_new_tokens=12, seed=2))
    learner = SimpleNamespace(
        model=model, tokenizer=tokenizer, value_head=None, reference=None, boundary=None
    )
    algorithm = SimpleNamespace(logprob_temperature=lambda cfg: cfg.temperature)

    def scored(mode: str) -> pg.Scored:
        cfg = resolve(TrainConfig(algo="nsr", old_logprobs=mode, micro_batch_size=3))
        return pg.score(SimpleNamespace(cfg=cfg, learner=learner, algorithm=algorithm), trajectories)

    rescored = scored("rescore")
    passes = []
    monkeypatch.setattr(pg, "run_forward", lambda *args, **kwargs: passes.append(1))
    recorded = scored("rollout")
    assert not passes and recorded.logprob_gap is None
    for i in range(len(trajectories)):
        assert torch.equal(recorded.masks[i], rescored.masks[i])
        assert torch.allclose(recorded.old_logprobs[i], rescored.old_logprobs[i], atol=LOGPROB_ATOL)
    assert rescored.logprob_gap is not None and rescored.logprob_gap < LOGPROB_ATOL


# -- SmolLM2 (slow: conversion on first use, bigger model) -------------------------------------


@pytest.mark.slow
def test_smollm2_loads_offline_and_plays_episodes() -> None:
    model, tokenizer = load_model("smollm2-135m")
    fmt = ChatFormat.from_tokenizer(tokenizer)
    turns = [("<search>capital of France</search>", OBSERVATIONS[0]), ("<answer>Paris</answer>", "ok")]
    assert _demonstrated(tokenizer, PROMPTS[0], turns)[0] == fmt.encode(fmt.render(PROMPTS[0], turns))
    policy = LMPolicy(model, tokenizer, max_new_tokens=16, temperature=0.7, seed=0, name="smollm2")
    env_kwargs = {"split": "train", "max_turns": 2, "top_k": 2, "snippet_chars": 120}
    trajectories = trajectories_from(run_episodes(policy, env_kwargs, 4, num_envs=4, progress=False))
    assert len(trajectories) == 4
    for trajectory in trajectories:
        runs = _mask_runs(trajectory.token_ids, trajectory.action_mask)
        assert 1 <= len(runs) <= 2 and all(len(run) <= 17 for run in runs)
    fresh, recorded = _fresh_logprobs(model, trajectories, policy.logprob_temperature)
    assert torch.allclose(fresh, recorded, atol=SMOLLM2_LOGPROB_ATOL)
