"""LangChain messages to the core's chat-message dicts, and core results to LangChain messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airoboros_ggml import Chunk, Completion, Usage
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk

PROVIDER = "airoboros_ggml"
"""``ls_provider`` and ``response_metadata["model_provider"]``."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}

_NON_TEXT_SKIPPED = frozenset({"tool_use", "tool_call", "thinking", "reasoning"})
"""Content blocks that carry no prompt text: tool calls (sent as ``tool_calls``) and earlier reasoning."""


def to_core_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The ``{"role", "content", "name", "tool_calls", "tool_call_id"}`` dicts that ``Model.chat`` takes.

    Raises:
        ValueError: a message role the core does not know, or non-text content (images, audio, files).
    """
    return [_to_core(message) for message in messages]


def _to_core(message: BaseMessage) -> dict[str, Any]:
    role = message.role if isinstance(message, ChatMessage) else _ROLES.get(message.type)
    if role is None:
        raise ValueError(f"unsupported message type {message.type!r}")
    out: dict[str, Any] = {"role": _ROLES.get(role, role), "content": _text(message)}
    if message.name:
        out["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [
            {"id": call["id"], "name": call["name"], "arguments": call["args"]} for call in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
    return out


def _text(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") not in _NON_TEXT_SKIPPED:
            raise ValueError(f"{block.get('type')!r} content is not supported: the model reads text only")
    return "".join(parts)


def usage_metadata(usage: Usage) -> UsageMetadata:
    """LangChain's token counts of a core :class:`~airoboros_ggml.Usage`."""
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        input_token_details={"cache_read": usage.cached_tokens},
    )


def ai_message(completion: Completion, model_name: str) -> AIMessage:
    """The ``AIMessage`` of a finished chat call (text, tool calls, usage, finish reason)."""
    return AIMessage(
        content=completion.text,
        tool_calls=[tool_call(name=c.name, args=c.arguments, id=c.id) for c in completion.tool_calls],
        usage_metadata=usage_metadata(completion.usage),
        response_metadata=_final_metadata(completion.finish_reason, model_name),
    )


def ai_message_chunk(chunk: Chunk, model_name: str) -> AIMessageChunk:
    """One streamed piece; the last one carries tool calls, usage (counted once) and the finish reason."""
    if chunk.finish_reason is None:
        return AIMessageChunk(content=chunk.text)
    return AIMessageChunk(
        content=chunk.text,
        tool_call_chunks=[
            tool_call_chunk(name=c.name, args=json.dumps(c.arguments, ensure_ascii=False), id=c.id, index=i)
            for i, c in enumerate(chunk.tool_calls)
        ],
        usage_metadata=usage_metadata(chunk.usage),
        response_metadata=_final_metadata(chunk.finish_reason, model_name),
        chunk_position="last",
    )


def _final_metadata(finish_reason: str, model_name: str) -> dict[str, Any]:
    return {"model_name": model_name, "finish_reason": finish_reason, "model_provider": PROVIDER}
