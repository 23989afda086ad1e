"""Constrained generation: GBNF grammars, JSON Schema, regexes and tool calls through llguidance."""

from .grammars import constraint_grammar, gbnf_grammar, json_schema_grammar, regex_grammar, response_format_grammar
from .processor import GrammarLogitsProcessor
from .tool_format import ToolCallStream, parse_tool_calls, tool_call_grammar, tool_format_for, tool_messages
from .tools import Tool, ToolCall, ToolChoice, parse_tools, resolve_tool_choice

__all__ = [
    "GrammarLogitsProcessor",
    "Tool",
    "ToolCall",
    "ToolCallStream",
    "ToolChoice",
    "constraint_grammar",
    "gbnf_grammar",
    "json_schema_grammar",
    "parse_tool_calls",
    "parse_tools",
    "regex_grammar",
    "resolve_tool_choice",
    "response_format_grammar",
    "tool_call_grammar",
    "tool_format_for",
    "tool_messages",
]
