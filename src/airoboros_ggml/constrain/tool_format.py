r"""How tools are shown to a model, how it calls them, and how calls are read back from its output.

A call is written as the Hermes / Qwen convention writes it, one JSON object between markers::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

The tools are described in the system message: in the Hermes wording (``<tools>`` block) when the model's
own chat template uses ``<tool_call>``; otherwise in a generic wording (:data:`GENERIC`), documented in
its text. Past calls are rendered in the same syntax in assistant turns, and ``tool`` messages become a
user turn of ``<tool_response>`` blocks, so any template (which knows only system/user/assistant) can
render a conversation with tools.

Generation is constrained by :func:`tool_call_grammar`: ``"required"`` (or a named tool) -> exactly one
call; ``"auto"`` -> either a call or plain text (text must not start with ``<`` or whitespace, so a call
can only start the reply).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .tools import Tool, ToolCall, call_schema

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)


@dataclasses.dataclass(frozen=True)
class ToolFormat:
    """A wording of the tool instructions put in the system message."""

    name: str
    """``"hermes"`` or ``"generic"``."""
    preamble: str
    """Instructions; ``{tools}`` receives one JSON line per tool."""

    def system_text(self, tools: Sequence[Tool], mode: str) -> str:
        """The tool instructions for the system message (``mode`` is ``"auto"`` or ``"required"``)."""
        lines = "\n".join(json.dumps(t.model_dump(), ensure_ascii=False) for t in tools)
        text = self.preamble.replace("{tools}", lines)
        if mode == "auto":
            text += "\nIf no tool is needed, answer in plain text instead."
        return text


HERMES = ToolFormat(
    name="hermes",
    preamble=(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    ),
)
"""The wording of Hermes 2 Pro / Qwen 2.5 chat templates (chosen when the template contains ``<tool_call>``)."""

GENERIC = ToolFormat(
    name="generic",
    preamble=(
        "You can use the following tools. Each is described by a JSON object with its name, what it does "
        "and the JSON Schema of its arguments:\n{tools}\n\n"
        "To call a tool, reply with only this, the arguments being a JSON object that follows the tool's "
        'schema:\n<tool_call>\n{"name": "<tool name>", "arguments": {...}}\n</tool_call>\n'
        "The result will be given back to you between <tool_response> and </tool_response>."
    ),
)
"""The generic wording, for models whose template declares no tool syntax."""


def tool_format_for(chat_template: str | None) -> ToolFormat:
    """:data:`HERMES` when the model file's chat template writes ``<tool_call>``, else :data:`GENERIC`."""
    return HERMES if chat_template and CALL_OPEN in chat_template else GENERIC


def render_call(name: str, arguments: Any) -> str:
    """A call as the model writes it."""
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CALL_CLOSE}"


def tool_messages(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Tool],
    mode: str,
    fmt: ToolFormat,
    default_system: str | None,
) -> list[dict[str, str]]:
    """Rewrite a conversation with tools into system/user/assistant messages any template can render.

    Args:
        messages: chat messages; assistant messages may carry ``tool_calls`` (:class:`ToolCall` objects or
            OpenAI dicts), ``tool`` messages answer them.
        tools: the tools the model may call (none: nothing is described).
        mode: ``"auto"``, ``"required"`` or ``"none"``.
        fmt: the wording of the instructions.
        default_system: the template's default system text, kept before the instructions when the
            conversation has no system message.

    Returns:
        The messages, the tool instructions appended to the system message.
    """
    out: list[dict[str, str]] = []
    responses: list[str] = []
    for msg in messages:
        role = msg.get("role")
        if role == "tool":
            responses.append(f"<tool_response>\n{msg.get('content', '')}\n</tool_response>")
            continue
        if responses:
            out.append({"role": "user", "content": "\n".join(responses)})
            responses = []
        if role == "assistant" and msg.get("tool_calls"):
            calls = [render_call(*_call_parts(c)) for c in msg["tool_calls"]]
            content = "\n".join(filter(None, [msg.get("content") or "", *calls]))
            out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": str(role), "content": msg.get("content") or ""})
    if responses:
        out.append({"role": "user", "content": "\n".join(responses)})
    if tools and mode != "none":
        instructions = fmt.system_text(tools, mode)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instructions}".lstrip()}
        else:
            base = f"{default_system}\n\n" if default_system else ""
            out.insert(0, {"role": "system", "content": base + instructions})
    return out


def _call_parts(call: Any) -> tuple[str, Any]:
    if isinstance(call, ToolCall):
        return call.name, call.arguments
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return function["name"], arguments


def tool_call_grammar(tools: Sequence[Tool], mode: str) -> str | None:
    """Lark grammar (llguidance syntax) of the reply: one call (``"required"``), a call or text (``"auto"``).

    Returns:
        None for ``"none"`` or no tools.
    """
    if mode == "none" or not tools:
        return None
    schema = {**call_schema(tools), "x-guidance": {"whitespace_flexible": False}}
    call = f'call: "{CALL_OPEN}\\n" call_body "\\n{CALL_CLOSE}"\ncall_body: %json {json.dumps(schema)}\n'
    if mode == "auto":
        return "start: call | TEXT\nTEXT: /[^<\\s][\\s\\S]*/\n" + call
    return "start: call\n" + call


def parse_tool_calls(text: str) -> tuple[ToolCall, ...]:
    """The calls in a reply that starts with a call (after whitespace); () for text or a broken call."""
    if not text.lstrip().startswith(CALL_OPEN):
        return ()
    calls = []
    for match in _CALL.finditer(text):
        try:
            body = json.loads(match.group(1))
        except json.JSONDecodeError:
            return ()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return ()
        arguments = body.get("arguments")
        calls.append(ToolCall.new(body["name"], arguments if isinstance(arguments, dict) else {}))
    return tuple(calls)


class ToolCallStream:
    """Keeps tool-call markup out of streamed text.

    Text is held back while it could still be the start of a call; once the reply starts with
    ``<tool_call>`` everything is held until :meth:`finish`, which parses the calls (or, for a call cut
    short, gives the held text back so nothing is lost).
    """

    def __init__(self) -> None:
        self._held = ""
        self._mode = "undecided"  # "text" | "call"

    def feed(self, text: str) -> str:
        """Add generated text; return what may be shown now."""
        if self._mode == "text":
            return text
        self._held += text
        head = self._held.lstrip()
        if self._mode == "call" or head.startswith(CALL_OPEN):
            self._mode = "call"
            return ""
        if not head or CALL_OPEN.startswith(head):
            return ""
        self._mode, shown, self._held = "text", self._held, ""
        return shown

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """The text still to show and the parsed calls (empty unless the reply was a complete call)."""
        held, self._held = self._held, ""
        calls = parse_tool_calls(held) if self._mode == "call" else ()
        return ("" if calls else held), calls
