"""SearchQA: a Gymnasium environment where an LM agent answers questions by searching a BM25 index.

``import searchenv`` registers ``SearchQA-v0`` and its variants.
"""

from searchenv.actions import ParsedAction, parse_action, parse_tool_call
from searchenv.env import SearchQAEnv
from searchenv.episode import EpisodeRecord, Turn
from searchenv.registration import VARIANTS, register_all
from searchenv.tools import tools_schema

register_all()

__all__ = [
    "VARIANTS",
    "EpisodeRecord",
    "ParsedAction",
    "SearchQAEnv",
    "Turn",
    "parse_action",
    "parse_tool_call",
    "tools_schema",
]
