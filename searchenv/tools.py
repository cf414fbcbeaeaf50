"""The agent's three tools, ``search``, ``read`` and ``answer``, as OpenAI function-calling schemas.

This module is the one owner of the tools' descriptions: ``tools_schema()`` serves them to any
OpenAI-style trainer (SkyRL, verifiers, a chat API), and the TRL bridge writes the same text into
its tool methods' docstrings (``tool_docstring``), from which TRL builds its own schema. A tool
call that follows these schemas is a valid ``env.step`` action (``searchenv.actions.parse_tool_call``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from searchenv.episode import TOOLS


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does, its single string argument and what it returns."""

    name: str
    description: str
    argument: str
    argument_description: str
    returns: str


TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="search",
            description="Search the corpus and return the best passages with their doc ids.",
            argument="query",
            argument_description='A few keywords, e.g. "France capital".',
            returns=(
                'One "[rank] doc_id | title | snippet" line per passage, or an error saying what to send.'
            ),
        ),
        ToolSpec(
            name="read",
            description="Read the full text of one passage.",
            argument="doc_id",
            argument_description='A doc id exactly as shown in search results, e.g. "fr/government/003".',
            returns="The passage text, or an error saying what to send.",
        ),
        ToolSpec(
            name="answer",
            description="Submit the final answer; this ends the episode.",
            argument="answer",
            argument_description='A short answer, e.g. "Paris".',
            returns="A confirmation that the episode is over, or an error saying what to send.",
        ),
    )
}
assert tuple(TOOL_SPECS) == TOOLS, "one spec per tool, in the env's order"

# The argument each tool call must carry: what the schemas declare and the parser reads.
TOOL_ARGUMENTS: dict[str, str] = {name: spec.argument for name, spec in TOOL_SPECS.items()}

_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": {
                "type": "object",
                "properties": {spec.argument: {"type": "string", "description": spec.argument_description}},
                "required": [spec.argument],
            },
        },
    }
    for spec in TOOL_SPECS.values()
]


def tools_schema() -> list[dict[str, Any]]:
    """The three tools as OpenAI function-calling schemas (``tools=`` of a chat request).

    Returns:
        A fresh list (safe to modify) of ``{"type": "function", "function": {"name",
        "description", "parameters"}}``, in the order search, read, answer.

    >>> [tool["function"]["name"] for tool in tools_schema()]
    ['search', 'read', 'answer']
    >>> tools_schema()[0]["function"]["parameters"]["required"]
    ['query']
    """
    return copy.deepcopy(_SCHEMAS)


def tool_docstring(name: str) -> str:
    """The Google-style docstring of tool ``name``, as a method of an adapter carries it.

    TRL's ``get_json_schema`` reads from it the description and argument text of ``tools_schema()``.

    Raises:
        KeyError: For a name other than search, read and answer.
    """
    spec = TOOL_SPECS[name]
    return (
        f"{spec.description}\n\n"
        f"Args:\n    {spec.argument}: {spec.argument_description}\n\n"
        f"Returns:\n    {spec.returns}\n"
    )


_Method = TypeVar("_Method", bound=Callable[..., Any])


def documented_tool(name: str) -> Callable[[_Method], _Method]:
    """Decorate a tool method of an adapter with the docstring of tool ``name``.

    Adapters that expose the tools as Python methods (TRL's builds its schema from them) use
    it so that their descriptions cannot drift from ``tools_schema()``.
    """

    def decorate(method: _Method) -> _Method:
        method.__doc__ = tool_docstring(name)
        return method

    return decorate
