"""Parsing agent actions: raw LLM text, structured dicts or OpenAI tool calls, into one typed record.

Text follows the Search-R1 convention: the first complete ``<search>q</search>``,
``<read>doc_id</read>`` or ``<answer>a</answer>`` is the action; ``<think>`` text before it is
allowed and anything after it is ignored. A ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``
block (the Hermes / Qwen text form of a tool call) counts as a complete action too. An OpenAI tool
call (``{"name": "search", "arguments": ...}``, its arguments a JSON string or a dict,
optionally wrapped as ``{"type": "function", "function": {...}}``) follows the schemas of
``searchenv.tools``. Parsing never raises on agent output: a bad action becomes a ``ParsedAction``
with ``tool=None`` and an ``error`` that explains the expected format, so the env can spend the
turn and tell the agent why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from searchenv.episode import TOOLS
from searchenv.tools import TOOL_ARGUMENTS

MAX_ACTION_CHARS = 8_000
MAX_ARGUMENT_CHARS = 500

_ACTION_RE = re.compile(r"<(search|read|answer)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_SEARCH_TAG_RE = re.compile(r"<search>.*?</search>", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANY_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9_-]*>")
_SPACES_RE = re.compile(r"\s+")
# Control characters other than whitespace would end up in prompts and logs unreadably.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

FORMAT_HELP = (
    "Reply with exactly one action: <search>your query</search>, <read>doc id from the results</read>, "
    "or <answer>short answer</answer>. You may think inside <think>...</think> before it."
)

TOOL_CALL_HELP = (
    'Call exactly one tool: search with {"query": "your query"}, read with {"doc_id": "a doc id from '
    'the results"}, or answer with {"answer": "short answer"}.'
)

# A tuple, not ``dict | Mapping``: that expression would build a union object on every call.
_MAPPINGS = (dict, Mapping)

_ARGUMENT_KEYS: dict[str, tuple[str, ...]] = {
    "search": ("query", "argument"),
    "read": ("doc_id", "argument"),
    "answer": ("answer", "argument"),
}


@dataclass(frozen=True)
class ParsedAction:
    """An action after parsing. ``tool`` is None when it could not be understood."""

    tool: str | None
    argument: str = ""
    error: str | None = None
    search_tags: int = 0

    @property
    def valid(self) -> bool:
        """Whether the action can be executed (a known tool and no error)."""
        return self.tool is not None and self.error is None


def _clean_argument(text: str) -> str:
    r"""Drop stray tags and control characters and collapse whitespace.

    >>> _clean_argument("  capital of <b>France</b>\n ")
    'capital of France'
    """
    if "<" in text:
        text = _ANY_TAG_RE.sub(" ", text)
    # Every character _CONTROL_RE replaces is unprintable, so a printable text skips the regex.
    if not text.isprintable():
        text = _CONTROL_RE.sub(" ", text)
    return " ".join(text.split())


def _invalid(message: str, search_tags: int = 0) -> ParsedAction:
    return ParsedAction(tool=None, error=message, search_tags=search_tags)


def _checked(tool: str, raw_argument: str, search_tags: int, empty: str | None = None) -> ParsedAction:
    argument = _clean_argument(raw_argument)
    if not argument:
        return _invalid(empty or f"The <{tool}> tag is empty. {FORMAT_HELP}", search_tags)
    if len(argument) > MAX_ARGUMENT_CHARS:
        return _invalid(
            f"The {tool} argument is {len(argument)} characters long; the limit is {MAX_ARGUMENT_CHARS}.",
            search_tags,
        )
    return ParsedAction(tool=tool, argument=argument, search_tags=search_tags)


def parse_text_action(text: str) -> ParsedAction:
    """Parse raw model output.

    >>> parse_text_action("<think>hmm</think><search>capital of France</search> trailing")
    ParsedAction(tool='search', argument='capital of France', error=None, search_tags=1)
    >>> parse_text_action("<answer>Paris</answer><search>x</search>").tool
    'answer'
    >>> parse_text_action("Paris").error.startswith("No complete action tag")
    True
    """
    if len(text) > MAX_ACTION_CHARS:
        return _invalid(
            f"The action is {len(text)} characters long; the limit is {MAX_ACTION_CHARS}. {FORMAT_HELP}",
            len(_SEARCH_TAG_RE.findall(text, 0, MAX_ACTION_CHARS)),
        )
    if text.startswith("<search>") and text.endswith("</search>") and "<" not in text[8:-9]:
        # The usual well-formed search: exactly what the regexes below would find, without them.
        return _checked("search", text[8:-9], 1)
    search_tags = len(_SEARCH_TAG_RE.findall(text))
    match = _ACTION_RE.search(text)
    if "<tool_call>" in text:
        call = _TOOL_CALL_RE.search(text)
        if call is not None and (match is None or call.start() < match.start()):
            # Parallel search calls in one turn count like several <search> tags (ReZero halves retry).
            calls = [parse_tool_call(body) for body in _TOOL_CALL_RE.findall(text)]
            searches = sum(parsed.tool == "search" for parsed in calls)
            return replace(calls[0], search_tags=search_tags + searches)
    if match is None:
        return _invalid(f"No complete action tag found. {FORMAT_HELP}", search_tags)
    return _checked(match.group(1).lower(), match.group(2), search_tags)


def parse_structured_action(action: Mapping[str, Any]) -> ParsedAction:
    """Parse ``{"tool": "search", "query": ...}`` style actions.

    >>> parse_structured_action({"tool": "read", "doc_id": "fr/government/003"}).argument
    'fr/government/003'
    >>> parse_structured_action({"tool": "fly"}).error[:20]
    'Unknown tool "fly". '
    """
    tool = action.get("tool")
    if not isinstance(tool, str) or tool.lower() not in TOOLS:
        return _invalid(f'Unknown tool "{tool}". Structured actions use "tool" in {list(TOOLS)}.')
    tool = tool.lower()
    for key in _ARGUMENT_KEYS[tool]:
        if key in action:
            value = action[key]
            if not isinstance(value, str):
                return _invalid(
                    f'The "{key}" of a {tool} action must be a string, not {type(value).__name__}.'
                )
            return _checked(tool, value, 1 if tool == "search" else 0)
    return _invalid(f'A {tool} action needs a "{_ARGUMENT_KEYS[tool][0]}" field.')


def _call_body(call: Mapping[str, Any] | str) -> Mapping[str, Any] | str:
    """The ``{"name", "arguments"}`` object of a call, or an error message."""
    if isinstance(call, str):
        if len(call) > MAX_ACTION_CHARS:
            return f"The tool call is {len(call)} characters long; the limit is {MAX_ACTION_CHARS}."
        try:
            call = json.loads(call)
        except (json.JSONDecodeError, RecursionError) as error:
            return f'The tool call is not valid JSON ({error}); send {{"name": ..., "arguments": {{...}}}}.'
    if not isinstance(call, _MAPPINGS):
        return (
            f'A tool call is a JSON object {{"name": ..., "arguments": {{...}}}}, not {type(call).__name__}.'
        )
    function = call.get("function")
    # The OpenAI message form nests the call: {"id": ..., "type": "function", "function": {...}}.
    return function if isinstance(function, _MAPPINGS) else call


def parse_tool_call(call: Mapping[str, Any] | str) -> ParsedAction:
    """Parse an OpenAI-style tool call, or the JSON text of one (a ``<tool_call>`` body).

    Arguments may be a JSON string (as OpenAI's API sends them) or a dict; the argument names
    are those of ``searchenv.tools_schema()``. Never raises on agent input.

    >>> parse_tool_call({"name": "search", "arguments": '{"query": "capital of France"}'}).argument
    'capital of France'
    >>> call = {"name": "read", "arguments": {"doc_id": "d1"}}
    >>> parse_tool_call({"type": "function", "function": call}).tool
    'read'
    >>> parse_tool_call({"name": "search", "arguments": "{oops"}).error[:45]
    'The arguments of the search call are not vali'
    """
    body = _call_body(call)
    if isinstance(body, str):
        return _invalid(f"{body} {TOOL_CALL_HELP}")
    name = body.get("name")
    if not isinstance(name, str) or name not in TOOLS:
        return _invalid(f"Unknown tool {name!r}. {TOOL_CALL_HELP}")
    key = TOOL_ARGUMENTS[name]
    arguments = body.get("arguments", {})
    if isinstance(arguments, str):
        if len(arguments) > MAX_ACTION_CHARS:
            return _invalid(
                f"The arguments of the {name} call are {len(arguments)} characters long; "
                f"the limit is {MAX_ACTION_CHARS}."
            )
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError) as error:
            return _invalid(
                f'The arguments of the {name} call are not valid JSON ({error}); send {{"{key}": "..."}}. '
                f"{TOOL_CALL_HELP}"
            )
    if not isinstance(arguments, _MAPPINGS):
        return _invalid(
            f'The arguments of the {name} call must be an object {{"{key}": "..."}}. {TOOL_CALL_HELP}'
        )
    if key not in arguments:
        return _invalid(
            f'A {name} call needs a "{key}" argument, got {sorted(map(str, arguments))}. {TOOL_CALL_HELP}'
        )
    value = arguments[key]
    if not isinstance(value, str):
        return _invalid(
            f'The "{key}" of a {name} call must be a string, not {type(value).__name__}. {TOOL_CALL_HELP}'
        )
    empty = f'The "{key}" of the {name} call is empty. {TOOL_CALL_HELP}'
    return _checked(name, value, 1 if name == "search" else 0, empty)


def parse_action(action: object) -> ParsedAction:
    """Parse any action the env accepts (text, a structured dict, an OpenAI tool call); never raises."""
    if isinstance(action, str):
        return parse_text_action(action)
    if isinstance(action, _MAPPINGS):
        if "tool" not in action and ("name" in action or "function" in action):
            return parse_tool_call(action)
        return parse_structured_action(action)
    if isinstance(action, ParsedAction):
        return action
    if isinstance(action, (bytes, bytearray)):
        # Not decoded: guessing an encoding would execute text the agent may not have meant.
        return _invalid(
            f"Actions are text (str) or dicts, not {type(action).__name__}: decode the bytes first, "
            f"e.g. action.decode('utf-8'). {FORMAT_HELP}"
        )
    return _invalid(f"Actions are text or dicts, not {type(action).__name__}. {FORMAT_HELP}")


def action_to_text(action: object) -> str:
    """The text form of an action, for transcripts and chat histories.

    >>> action_to_text({"tool": "search", "query": "capital of France"})
    '<search>capital of France</search>'
    """
    if isinstance(action, str):
        return action
    parsed = action if isinstance(action, ParsedAction) else parse_action(action)
    if parsed.tool is None:
        return repr(action)
    return f"<{parsed.tool}>{parsed.argument}</{parsed.tool}>"
