"""Property-based: no action string, however broken, crashes the env or goes unexplained."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchenv.actions import MAX_ACTION_CHARS, parse_action
from searchenv.env import SearchQAEnv

TAGS = ["search", "read", "answer", "think", "information", "SEARCH", "Answer", "sea rch", ""]
FRAGMENTS = st.sampled_from(
    [f"<{t}>" for t in TAGS]
    + [f"</{t}>" for t in TAGS]
    + [
        "<",
        ">",
        "</",
        "/>",
        "<<search>>",
        "<search/>",
        "\x00",
        "\u202e",
        "😀",
        "Ж",
        "\n",
        " ",
        "../../etc/passwd",
    ]
)
TEXTS = st.text(max_size=40)
ADVERSARIAL = st.lists(st.one_of(FRAGMENTS, TEXTS), max_size=12).map("".join)
DOC_IDS = st.one_of(st.text(max_size=30), st.sampled_from(["fr/government/000", "/etc/passwd", "", " ", "0"]))
TAGGED = st.builds(
    lambda tool, inner, before, after: f"{before}<{tool}>{inner}</{tool}>{after}",
    st.sampled_from(["search", "read", "answer"]),
    st.one_of(TEXTS, DOC_IDS, st.just(""), st.just("   ")),
    ADVERSARIAL,
    ADVERSARIAL,
)
HUGE = st.builds(
    lambda n, s: s * n, st.integers(1, 3 * MAX_ACTION_CHARS), st.sampled_from(["a", "<search>", "é"])
)
STRUCTURED = st.dictionaries(
    st.sampled_from(["tool", "query", "doc_id", "answer", "argument", "x"]),
    st.one_of(st.sampled_from(["search", "read", "answer", "fly"]), TEXTS, st.integers(), st.none()),
    max_size=4,
)
ACTIONS = st.one_of(ADVERSARIAL, TAGGED, HUGE, STRUCTURED, st.text(max_size=300), st.binary(max_size=50))

_ENV = SearchQAEnv(split="test", max_turns=6)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(action=ACTIONS, seed=st.integers(0, 2**16))
def test_any_action_steps_without_exception(action: object, seed: int) -> None:
    if _ENV._done:
        _ENV.reset(seed=seed)
    obs, _, terminated, truncated, info = _ENV.step(action)
    assert isinstance(obs, str) and obs and _ENV.observation_space.contains(obs)
    assert not (terminated and truncated)
    parsed = parse_action(action)
    if not parsed.valid or info["error"]:
        # An invalid action is explained, and says what is expected.
        assert obs.startswith("<error>") and info["error"]
    if terminated or truncated:
        assert set(info["reward_breakdown"]) >= {"correctness"}
        _ENV.reset(seed=seed)


def test_action_space_samples_step_without_error() -> None:
    env = SearchQAEnv(split="test", max_turns=3)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(200):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
