"""Tool definitions (OpenAI shape), the ``tool_choice`` of a call, and the parsed :class:`ToolCall`."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import GrammarError
from .grammars import closed_objects

ToolChoice = Literal["auto", "required", "none"] | Mapping[str, Any]
"""``"auto"`` (text or a call), ``"required"`` (a call), ``"none"`` (text only), or a named tool:
``{"type": "function", "function": {"name": ...}}`` (``{"name": ...}`` is accepted too)."""


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A call of a tool the model made."""

    id: str
    """Unique id (``call_`` + 24 hex digits); a ``tool`` message answering the call repeats it."""
    name: str
    """Name of the called tool (one of those passed in ``tools``)."""
    arguments: dict[str, Any]
    """The arguments, valid against the tool's parameter schema."""

    @classmethod
    def new(cls, name: str, arguments: dict[str, Any]) -> ToolCall:
        """A call with a fresh id."""
        return cls(f"call_{uuid.uuid4().hex[:24]}", name, arguments)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI message shape: ``{"id", "type": "function", "function": {"name", "arguments": JSON}}``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


class ToolFunction(BaseModel):
    """The ``function`` part of a tool definition."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """The name the model calls it by (letters, digits, ``_ . -``; at most 64)."""
    description: str = ""
    """What the tool does, shown to the model."""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments object."""


class Tool(BaseModel):
    """An OpenAI-style tool definition: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    """Only function tools exist."""
    function: ToolFunction
    """The function."""


def parse_tools(tools: Sequence[Mapping[str, Any] | Tool]) -> list[Tool]:
    """Validate tool definitions.

    Raises:
        pydantic.ValidationError: a definition without a name, with a bad name, or of the wrong shape.
        GrammarError: two tools share a name.
    """
    parsed = [t if isinstance(t, Tool) else Tool.model_validate(t) for t in tools]
    names = [t.function.name for t in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GrammarError(f"tools: duplicate tool name(s) {', '.join(duplicates)}")
    return parsed


def resolve_tool_choice(tool_choice: ToolChoice, tools: Sequence[Tool]) -> tuple[str, list[Tool]]:
    """The mode (``"auto"``, ``"required"`` or ``"none"``) and the tools the model may call.

    A named tool choice becomes ``"required"`` with that tool alone.

    Raises:
        GrammarError: an unknown choice, a name not among the tools, or ``"required"`` without tools.
    """
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function", tool_choice)
        name = function.get("name") if isinstance(function, Mapping) else None
        chosen = [t for t in tools if t.function.name == name]
        if not chosen:
            known = ", ".join(t.function.name for t in tools) or "none given"
            raise GrammarError(f"tool_choice names {name!r}, which is not among the tools ({known})")
        return "required", chosen
    if tool_choice not in ("auto", "required", "none"):
        raise GrammarError(f'tool_choice: expected "auto", "required", "none" or a named tool, got {tool_choice!r}')
    if tool_choice == "required" and not tools:
        raise GrammarError('tool_choice "required" needs at least one tool')
    return tool_choice, list(tools) if tool_choice != "none" else []


def call_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """JSON Schema of one call: ``{"name": <one of the tools>, "arguments": <that tool's parameters>}``.

    Each tool's ``$defs`` move to the root, renamed ``tool<i>_<name>``, so its ``#/$defs/...`` references
    still resolve once the parameters are nested. Argument objects allow only the keys they list unless
    their schema says otherwise (:func:`~airoboros_ggml.constrain.grammars.closed_objects`).
    """
    options = []
    defs: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        parameters, own_defs = _renamed_defs(closed_objects(tool.function.parameters), f"tool{i}_")
        defs.update(own_defs)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.function.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": defs} if defs else schema


def _renamed_defs(parameters: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``parameters`` without ``$defs`` and its definitions, every ``#/$defs/<key>`` renamed with ``prefix``."""
    parameters = dict(parameters)
    own = parameters.pop("$defs", None) or {}
    text = json.dumps([parameters, own])
    for key in own:
        text = text.replace(json.dumps(f"#/$defs/{key}"), json.dumps(f"#/$defs/{prefix}{key}"))
    parameters, own = json.loads(text)
    return parameters, {prefix + key: value for key, value in own.items()}
