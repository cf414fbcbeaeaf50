"""SearchQA: a Gymnasium environment where a language-model agent answers questions by
searching a local BM25 index. ``import searchenv`` registers ``SearchQA-v0`` and its variants."""

from searchenv.actions import ParsedAction, parse_action
from searchenv.env import SearchQAEnv
from searchenv.episode import EpisodeRecord, Turn
from searchenv.registration import VARIANTS, register_all
from searchenv.vector import GroupedQuestions, make_group_vec

register_all()

__all__ = [
    "VARIANTS",
    "EpisodeRecord",
    "GroupedQuestions",
    "ParsedAction",
    "SearchQAEnv",
    "Turn",
    "make_group_vec",
    "parse_action",
]
