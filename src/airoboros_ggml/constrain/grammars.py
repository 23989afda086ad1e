"""Turn a user's constraint (GBNF, JSON Schema, OpenAI ``response_format``, regex) into an llguidance grammar.

Every function returns llguidance's grammar text (what ``llguidance.LLMatcher`` takes) after checking it
with ``LLMatcher.validate_grammar``; anything llguidance rejects raises
:class:`~airoboros_ggml.errors.GrammarError` with llguidance's own message. JSON is compiled with
``whitespace_flexible=False`` (compact separators, no free whitespace), so random sampling cannot run away
in whitespace; llguidance refuses schema keywords it does not implement (``if``, ``not``,
``uniqueItems``, ...) by name rather than ignoring them.

llguidance is imported on the first call, never when no constraint is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import GrammarError

JSON_OPTIONS = {"whitespace_flexible": False}
"""llguidance JSON compile options used for every schema."""

_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def gbnf_grammar(text: str) -> str:
    r"""Compile a GBNF grammar (llama.cpp syntax, ``root`` is the start rule).

    Converted by llguidance's GBNF -> Lark converter, with two fixes:

    - ``\uXXXX`` / ``\UXXXXXXXX`` escapes are rewritten first (the converter mangles them): ASCII code
      points as ``\xNN``, others as the literal character;
    - the rules the converter turns into Lark terminals are turned back into rules. Terminals are lexed
      greedily, which changes the language: in llama.cpp's ``arithmetic.gbnf``, ``num ::= [0-9]+ ws``
      followed by ``"\n"`` would swallow the newline (``ws`` matches it) and never let the line end. GBNF
      is matched character by character, so every rule stays a parser rule. This costs mask time (a few
      ms per token instead of tens of microseconds for JSON); JSON Schema constraints are not affected.

    Raises:
        GrammarError: malformed GBNF, an unknown rule, or a grammar llguidance rejects.
    """
    from llguidance.gbnf_to_lark import any_to_lark

    if not isinstance(text, str) or not text.strip():
        raise GrammarError("grammar: expected GBNF text, got an empty grammar")
    try:
        lark = any_to_lark(_rewrite_unicode_escapes(text))
    except Exception as exc:  # noqa: BLE001 - the converter raises bare Exception for unknown rules
        raise GrammarError(f"grammar: cannot convert GBNF: {exc}") from None
    return lark_grammar(_terminals_as_rules(lark))


_LARK_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|/(?:[^/\\\n]|\\.)+/|//[^\n]*|\b[A-Z][A-Z0-9_]*\b')
_LARK_TERMINAL = re.compile(r"^([A-Z][A-Z0-9_]*)\s*:", re.MULTILINE)


def _terminals_as_rules(lark: str) -> str:
    """Rename every terminal ``NAME`` defined in a Lark grammar to the rule ``name_`` (strings, regexes kept)."""
    terminals = set(_LARK_TERMINAL.findall(lark))

    def rename(match: re.Match[str]) -> str:
        token = match.group(0)
        return token.lower() + "_" if token in terminals else token

    return _LARK_TOKEN.sub(rename, lark)


def _rewrite_unicode_escapes(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = int(match.group(2)[1:], 16)
        return match.group(1) + (f"\\x{code:02X}" if code < 0x80 else chr(code))

    return _UNICODE_ESCAPE.sub(replace, text)


def json_schema_grammar(schema: Any) -> str:
    """Compile a JSON Schema: a dict, JSON text, or a pydantic model class (its ``model_json_schema()``).

    Objects that list their ``properties`` get no other keys unless the schema says so (:func:`closed_objects`).

    Raises:
        GrammarError: not a schema, or one llguidance rejects (invalid, unimplemented keyword, bad ``$ref``).
    """
    import llguidance

    schema = closed_objects(schema_dict(schema))
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
    except ValueError as exc:
        raise GrammarError(f"json_schema: {exc}") from None
    return _validated(grammar, "json_schema")


_SUBSCHEMA = ("items", "prefixItems", "anyOf", "oneOf", "additionalProperties", "contains")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def closed_objects(schema: Any) -> Any:
    """A copy of a JSON Schema in which every object that lists ``properties`` allows no other keys.

    JSON Schema lets an object carry keys it does not list unless ``additionalProperties`` forbids them;
    llama.cpp's schema converter closes such objects by default, and so does this one: given the freedom, a
    small model fills objects with keys of its own (SmolLM2 copied the schema's keywords into tool
    arguments until ``max_tokens`` ran out). An explicit ``additionalProperties`` or ``patternProperties``
    is kept as written, objects without ``properties`` stay free-form, and ``allOf`` branches (which only
    make sense together) are left alone.
    """
    if isinstance(schema, list):
        return [closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA:
            value = closed_objects(value)
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            value = {name: closed_objects(sub) for name, sub in value.items()}
        out[key] = value
    if isinstance(out.get("properties"), dict) and not {"additionalProperties", "patternProperties"} & out.keys():
        out["additionalProperties"] = False
    return out


def schema_dict(schema: Any) -> dict[str, Any]:
    """The JSON Schema of a dict, JSON text or pydantic model class, as a dict.

    Raises:
        GrammarError: the value is none of these.
    """
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"json_schema: not valid JSON: {exc}") from None
    if isinstance(schema, Mapping):
        return dict(schema)
    raise GrammarError(
        f"json_schema: expected a dict, JSON text or a pydantic model class, got {type(schema).__name__}"
    )


def response_format_grammar(response_format: Mapping[str, Any]) -> str | None:
    """Compile an OpenAI ``response_format``.

    ``{"type": "text"}`` -> no constraint (None); ``{"type": "json_object"}`` -> any JSON object;
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`` -> that schema (a
    pydantic class is accepted in place of the dict).

    Raises:
        GrammarError: an unknown type or a missing/invalid schema.
    """
    if not isinstance(response_format, Mapping):
        raise GrammarError(f"response_format: expected a dict, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema_grammar({"type": "object"})
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or spec.get("schema") is None:
            raise GrammarError('response_format: "json_schema" needs {"json_schema": {"name": ..., "schema": {...}}}')
        return json_schema_grammar(spec["schema"])
    raise GrammarError(f'response_format: unknown type {kind!r}; use "text", "json_object" or "json_schema"')


def regex_grammar(pattern: str) -> str:
    """Compile a regular expression (Rust ``regex`` syntax) that the whole output must match.

    Raises:
        GrammarError: an invalid pattern.
    """
    import llguidance

    if not isinstance(pattern, str):
        raise GrammarError(f"regex: expected a string, got {type(pattern).__name__}")
    return _validated(llguidance.LLMatcher.grammar_from_regex(pattern), "regex")


def lark_grammar(text: str, what: str = "grammar") -> str:
    """Compile a grammar in llguidance's Lark syntax (used for tool calls).

    Raises:
        GrammarError: a grammar llguidance rejects.
    """
    import llguidance

    return _validated(llguidance.LLMatcher.grammar_from_lark(text), what)


def constraint_grammar(
    *,
    grammar: str | None = None,
    json_schema: Any = None,
    response_format: Mapping[str, Any] | None = None,
    regex: str | None = None,
) -> str | None:
    """The llguidance grammar of at most one constraint (None when none is given).

    Raises:
        GrammarError: more than one constraint, or an invalid one.
    """
    given = {
        name: value
        for name, value in (
            ("grammar", grammar),
            ("json_schema", json_schema),
            ("response_format", response_format),
            ("regex", regex),
        )
        if value is not None
    }
    if len(given) > 1:
        raise GrammarError(f"give at most one of grammar, json_schema, response_format, regex; got {', '.join(given)}")
    if grammar is not None:
        return gbnf_grammar(grammar)
    if json_schema is not None:
        return json_schema_grammar(json_schema)
    if response_format is not None:
        return response_format_grammar(response_format)
    if regex is not None:
        return regex_grammar(regex)
    return None


def _validated(grammar: str, what: str) -> str:
    import llguidance

    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise GrammarError(f"{what}: {messages[0].strip()}")
    return grammar
