"""The llguidance bridge without a model: token bytes, the mask kernel, grammar compilation, tool-call formats.

Constrained "generation" here samples from random logits through the grammar processor, on the real Llama-2
(SentencePiece) and GPT-2 (byte-level BPE) vocabularies; outputs are checked by independent recognisers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pydantic
import pytest

from airoboros_ggml.constrain import (
    GrammarLogitsProcessor,
    ToolCall,
    ToolCallStream,
    constraint_grammar,
    parse_tool_calls,
    parse_tools,
    resolve_tool_choice,
    tool_call_grammar,
    tool_format_for,
    tool_messages,
)
from airoboros_ggml.constrain.bitmask import apply_bitmask, apply_bitmask_reference
from airoboros_ggml.constrain.grammars import closed_objects, lark_grammar
from airoboros_ggml.constrain.tool_format import GENERIC, HERMES
from airoboros_ggml.constrain.vocabulary import ll_tokenizer, token_bytes
from airoboros_ggml.errors import GrammarError
from airoboros_ggml.tokenizer import Tokenizer
from constrain_recognisers import is_prefix, recognises

DATA = Path(__file__).parent / "data"
GRAMMARS = sorted(p.stem for p in (DATA / "grammars").glob("*.gbnf"))


@pytest.fixture(scope="module", params=["llama-spm", "gpt-2"])
def tokenizer(request) -> Tokenizer:
    return Tokenizer.from_file(DATA / f"ggml-vocab-{request.param}.gguf")


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_file(DATA / "ggml-vocab-gpt-2.gguf")


def grammar_text(name: str) -> str:
    return (DATA / "grammars" / f"{name}.gbnf").read_text(encoding="utf-8")


_CLOSERS = frozenset(b'"}])=;,(\n')


def closer_ids(tokenizer: Tokenizer) -> np.ndarray:
    """Ids of tokens made only of closing characters (quotes, brackets, ``= ; , (``, newline)."""
    data = [tokenizer.token_to_bytes(i) for i in range(tokenizer.n_vocab)]
    return np.array([i for i, b in enumerate(data) if b and set(b) <= _CLOSERS], dtype=np.int64)


def random_walk(tokenizer: Tokenizer, grammar: str, seed: int, max_steps: int = 400) -> str:
    """Greedy decoding of random logits through the grammar processor.

    Closing tokens and EOS grow likelier step by step, so that structures end; a model stands in for this
    in the SmolLM2 tests.
    """
    n_vocab = tokenizer.n_vocab
    processor = GrammarLogitsProcessor(tokenizer, grammar, n_vocab)
    rng = np.random.default_rng(seed)
    tokens = [tokenizer.bos_id or 0]  # the "prompt"
    eog = tokenizer.eog_ids
    closers = closer_ids(tokenizer)
    for step in range(max_steps):
        logits = rng.standard_normal(n_vocab).astype(np.float32)  # float32 (n_vocab,)
        logits[closers] += 0.05 * step
        logits[eog] += 0.3 * step
        token = int(np.argmax(processor(tokens, logits)))
        if token in eog:
            return b"".join(tokenizer.token_to_bytes(t) for t in tokens[1:]).decode("utf-8")
        tokens.append(token)
    raise AssertionError(f"no end after {max_steps} tokens")


# ---------------------------------------------------------------- token bytes and the llguidance tokenizer


def test_token_bytes_spm():
    tok = Tokenizer.from_file(DATA / "ggml-vocab-llama-spm.gguf")
    data = token_bytes(tok, tok.n_vocab + 5)
    assert len(data) == tok.n_vocab + 5 and data[-5:] == [b""] * 5
    assert data[tok.tokenize("Hello", add_bos=False)[0]] == b" Hello"  # ▁Hello
    assert data[tok.encode_exact("\n")[0]] == b"\n"  # <0x0A>
    assert data[tok.bos_id] == b"\xff<s>" and data[tok.eos_id] == b"\xff</s>" and data[0] == b"\xff<unk>"


def test_token_bytes_gpt2(gpt2):
    data = token_bytes(gpt2)
    assert data[gpt2.tokenize(" world", add_bos=False)[0]] == b" world"  # Ġworld
    assert data[gpt2.eos_id] == b"\xff<|endoftext|>"
    assert sum(len(b) == 1 for b in data) >= 256  # every byte has its own token


@pytest.mark.parametrize("text", ["{", " Hello\nworld", "Hello  world", "  x", "é😀\t{\"a\": 1}", "\n\n"])
def test_encode_exact_spells_the_text(tokenizer, text):
    ids = tokenizer.encode_exact(text)
    assert b"".join(tokenizer.token_to_bytes(i) for i in ids) == text.encode()
    assert ll_tokenizer(tokenizer).tokenize_str(text) == ids


def test_ll_tokenizer_is_cached_per_tokenizer(tokenizer):
    assert ll_tokenizer(tokenizer) is ll_tokenizer(tokenizer)
    llt = ll_tokenizer(tokenizer)
    assert llt.vocab_size == tokenizer.n_vocab and set(llt.eos_tokens) == set(tokenizer.eog_ids)


def test_no_llguidance_import_without_constraint():
    code = (
        "import sys, airoboros_ggml, airoboros_ggml.constrain as c\n"
        "assert c.constraint_grammar() is None\n"
        "print('llguidance' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- the mask kernel


@pytest.mark.parametrize("n_vocab", [1, 31, 32, 33, 1000, 32000])
def test_apply_bitmask_matches_reference(n_vocab):
    rng = np.random.default_rng(n_vocab)
    for words in (None, -1, 0):
        bitmask = rng.integers(-(2**31), 2**31, size=(n_vocab + 31) // 32, dtype=np.int64).astype(np.int32)
        if words is not None:
            bitmask[::2] = words  # all allowed / none allowed words exercise both shortcuts
        logits = rng.standard_normal(n_vocab).astype(np.float32)  # float32 (n_vocab,)
        expected = logits.copy()
        apply_bitmask_reference(expected, bitmask)
        apply_bitmask(logits, bitmask)
        np.testing.assert_array_equal(logits, expected)


def test_apply_bitmask_short_mask_disallows_the_rest():
    logits = np.zeros(70, dtype=np.float32)
    apply_bitmask(logits, np.array([-1], dtype=np.int32))
    assert np.isfinite(logits[:32]).all() and np.isneginf(logits[32:]).all()


# ---------------------------------------------------------------- grammars


@pytest.mark.parametrize("name", GRAMMARS)
def test_sample_grammars_random_walk(tokenizer, name):
    grammar = constraint_grammar(grammar=grammar_text(name))
    for seed in range(3):
        text = random_walk(tokenizer, grammar, seed)
        assert recognises(name, text), (name, seed, text)


@pytest.mark.parametrize(
    ("name", "sentence", "prefix", "neither"),
    [
        ("json", '{"a": [1, 2], "b": "x"}', '{"a": "xy', '{"a" 1'),
        ("json_arr", '[\n1,\n{"a": 2}]', '[\n"ab', "[1]"),
        ("chess", "1. e4 e5\n2. Nf3 Nc6\n", "1. e4 e5\n2. Nf", "1. e4 e5\n2. Zz"),
        ("list", "- a\n- b\n", "- a\n- b", "* a"),
        ("english", "Hello world.", "Hello world ", "Hello  world"),
        ("chess", "1. e4 e5\n2. O-O-O O-O\n", "1. e4 e5\n27. O-", "1. e4 e5\n2.. e4"),  # cut in "27. ", "O-O"
        ("japanese", "こんにちは 世界", "こんにちは ", "hello"),
        ("japanese", "世界", "世\ufffd", "\ufffd世"),  # cut inside a multi-byte character
        ("arithmetic", "x = 4\ny = 6\n", "x = 4 \ny", "x == 4"),
        ("c", "int f(){return 1;}", "int f(){ret", "int f[]"),
    ],
)
def test_recognisers_tell_sentences_prefixes_and_others_apart(name, sentence, prefix, neither):
    assert recognises(name, sentence) and is_prefix(name, sentence)
    assert not recognises(name, prefix) and is_prefix(name, prefix)
    assert not recognises(name, neither) and not is_prefix(name, neither)


def test_unicode_escapes_are_rewritten(gpt2):
    grammar = constraint_grammar(grammar='root ::= "\\u00e9" [\\u0041-\\u0043] "\\\\u0041"')
    text = random_walk(gpt2, grammar, 0)
    assert text[0] == "é" and text[1] in "ABC" and text[2:] == "\\u0041"


SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
            "address": {"$ref": "#/$defs/address"},
        },
        "required": ["name", "age", "tags", "address"],
        "additionalProperties": False,
        "$defs": {"address": {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                              "required": ["zip"], "additionalProperties": False}},
    },
    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
    {"type": "object", "patternProperties": {"^x_": {"type": "boolean"}}, "additionalProperties": False,
     "maxProperties": 3},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["object", "array", "pattern-properties"])
def test_json_schema_random_walk_validates(tokenizer, schema):
    grammar = constraint_grammar(json_schema=schema)
    for seed in range(3):
        text = random_walk(tokenizer, grammar, seed)
        jsonschema.validate(json.loads(text), schema)
        outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
        assert not re.search(r"\s", outside_strings), text  # compact: no free whitespace


def test_objects_listing_properties_are_closed():
    schema = {
        "type": "object",
        "properties": {
            "point": {"$ref": "#/$defs/point"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "free": {"type": "object"},
            "open": {"type": "object", "properties": {}, "additionalProperties": True},
            "either": {"anyOf": [{"type": "object", "properties": {"x": {"type": "integer"}}}, {"type": "null"}]},
            "both": {"allOf": [{"type": "object", "properties": {"y": {"type": "integer"}}}]},
            "named": {"type": "object", "patternProperties": {"^n_": {}}, "properties": {"n_1": {}}},
        },
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    closed = closed_objects(schema)
    props = closed["properties"]
    assert closed["additionalProperties"] is False and closed["$defs"]["point"]["additionalProperties"] is False
    assert props["tags"]["items"]["additionalProperties"] is False
    assert props["either"]["anyOf"][0]["additionalProperties"] is False
    assert props["open"]["additionalProperties"] is True
    for kept in ("free", "named"):
        assert "additionalProperties" not in props[kept]
    assert "additionalProperties" not in props["both"]["allOf"][0]
    assert "additionalProperties" not in schema  # a copy


def test_json_schema_objects_get_only_their_keys(tokenizer):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}
    grammar = constraint_grammar(json_schema=schema)
    for seed in range(3):
        assert set(json.loads(random_walk(tokenizer, grammar, seed))) <= {"a", "b"}


def test_pydantic_schema_and_response_formats(gpt2):
    class Point(pydantic.BaseModel):
        x: int
        y: int
        label: str = pydantic.Field(max_length=5)

    text = random_walk(gpt2, constraint_grammar(json_schema=Point), 1)
    Point.model_validate_json(text)
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": Point.model_json_schema()}}
    Point.model_validate_json(random_walk(gpt2, constraint_grammar(response_format=fmt), 2))
    assert isinstance(json.loads(random_walk(gpt2, constraint_grammar(response_format={"type": "json_object"}), 3)),
                      dict)
    assert constraint_grammar(response_format={"type": "text"}) is None


def test_regex(gpt2):
    text = random_walk(gpt2, constraint_grammar(regex=r"[0-9]{3}-[a-z]{2,4}"), 0)
    assert len(text) >= 6 and text[:3].isdigit() and text[3] == "-"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grammar": 'root ::= "a" ('}, "Expected ')'"),
        ({"grammar": 'root ::= "a" missing'}, "missing"),
        ({"grammar": "   "}, "empty"),
        ({"json_schema": {"type": "foo"}}, "Invalid type: foo"),
        ({"json_schema": {"$ref": "#/$defs/nope"}}, "/$defs/nope"),
        ({"json_schema": {"type": "array", "uniqueItems": True}}, "uniqueItems"),
        ({"json_schema": "{not json"}, "not valid JSON"),
        ({"json_schema": 3}, "expected a dict"),
        ({"response_format": {"type": "xml"}}, "unknown type 'xml'"),
        ({"response_format": {"type": "json_schema"}}, "needs"),
        ({"regex": "[a-"}, "regex"),
        ({"grammar": 'root ::= "a"', "regex": "a"}, "at most one"),
    ],
)
def test_bad_constraints_raise_grammar_error(kwargs, message):
    with pytest.raises(GrammarError, match=None) as info:
        constraint_grammar(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_processor_masks_all_but_eos_once_complete(gpt2):
    processor = GrammarLogitsProcessor(gpt2, constraint_grammar(regex="ab"), gpt2.n_vocab)
    tokens = [0]
    processor(tokens, np.zeros(gpt2.n_vocab, dtype=np.float32))
    tokens += gpt2.encode_exact("ab")
    logits = processor(tokens, np.zeros(gpt2.n_vocab, dtype=np.float32))
    assert processor.is_stopped and np.isfinite(logits).nonzero()[0].tolist() == gpt2.eog_ids


def test_processor_rejects_a_forbidden_token(gpt2):
    processor = GrammarLogitsProcessor(gpt2, constraint_grammar(regex="ab"), gpt2.n_vocab)
    processor([0], np.zeros(gpt2.n_vocab, dtype=np.float32))
    with pytest.raises(GrammarError, match="rejected"):
        processor([0, *gpt2.encode_exact("x")], np.zeros(gpt2.n_vocab, dtype=np.float32))


# ---------------------------------------------------------------- tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/num"}, "b": {"$ref": "#/$defs/num"}},
            "required": ["a", "b"],
            "$defs": {"num": {"type": "integer", "minimum": -99, "maximum": 99}},
        },
    },
}


def test_tool_definitions_are_validated():
    with pytest.raises(pydantic.ValidationError, match="name"):
        parse_tools([{"type": "function", "function": {"description": "no name"}}])
    with pytest.raises(pydantic.ValidationError):
        parse_tools([{"type": "retrieval"}])
    with pytest.raises(GrammarError, match="duplicate"):
        parse_tools([WEATHER, WEATHER])


def test_tool_choice():
    tools = parse_tools([WEATHER, ADD])
    assert resolve_tool_choice("auto", tools) == ("auto", tools)
    assert resolve_tool_choice("none", tools) == ("none", [])
    assert resolve_tool_choice({"type": "function", "function": {"name": "add"}}, tools) == ("required", tools[1:])
    assert resolve_tool_choice({"name": "add"}, tools) == ("required", tools[1:])
    with pytest.raises(GrammarError, match="not among the tools"):
        resolve_tool_choice({"name": "mul"}, tools)
    with pytest.raises(GrammarError, match="needs at least one tool"):
        resolve_tool_choice("required", [])
    with pytest.raises(GrammarError, match="tool_choice"):
        resolve_tool_choice("always", tools)


@pytest.mark.parametrize("mode", ["required", "auto"])
def test_tool_call_grammar_random_walk(tokenizer, mode):
    tools = parse_tools([WEATHER, ADD])
    grammar = lark_grammar(tool_call_grammar(tools, mode))
    schemas = {t.function.name: {**t.function.parameters} for t in tools}
    n_calls = 0
    for seed in range(4):
        text = random_walk(tokenizer, grammar, seed)
        calls = parse_tool_calls(text)
        if mode == "required" or text.startswith("<tool_call>"):
            assert len(calls) == 1, text
            jsonschema.validate(calls[0].arguments, schemas[calls[0].name])
            n_calls += 1
        else:
            assert calls == () and not text[0].isspace() and text[0] != "<"
    assert mode == "auto" or n_calls == 4
    assert tool_call_grammar(tools, "none") is None


def test_tool_messages_render_calls_and_results():
    tools = parse_tools([WEATHER])
    call = ToolCall("call_1", "get_weather", {"city": "Paris", "unit": "C"})
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        {"role": "assistant", "content": "", "tool_calls": [call.to_openai()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "19 C"},
    ]
    out = tool_messages(messages, tools, "auto", GENERIC, "Be brief.")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\n") and '"get_weather"' in out[0]["content"]
    assert out[2]["content"] == out[4]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>'
    )
    assert out[3]["content"] == "<tool_response>\n18 C\n</tool_response>"
    with_system = tool_messages([{"role": "system", "content": "S"}, *messages[:1]], tools, "required", HERMES, None)
    assert with_system[0]["content"].startswith("S\n\n# Tools") and "<tools>" in with_system[0]["content"]
    assert tool_messages(messages[:1], tools, "none", GENERIC, "Be brief.") == messages[:1]


def test_tool_format_for_template():
    assert tool_format_for("{% if tools %}<tool_call>{% endif %}") is HERMES
    assert tool_format_for(None) is GENERIC and tool_format_for("<|im_start|>") is GENERIC


def test_tool_call_stream_hides_calls():
    stream = ToolCallStream()
    pieces = ["<tool", "_call>\n{\"name\": \"add\", ", "\"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"]
    assert [stream.feed(p) for p in pieces] == ["", "", ""]
    text, calls = stream.finish()
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("add", {"a": 1, "b": 2})]
    assert calls[0].id.startswith("call_") and len(calls[0].id) == 29

    stream = ToolCallStream()
    assert [stream.feed(p) for p in [" ", "<to", "day", " is"]] == ["", "", " <today", " is"]
    assert stream.finish() == ("", ())

    stream = ToolCallStream()  # a call cut short (max_tokens): the text comes back, no call
    assert stream.feed('<tool_call>\n{"name": "add", "argu') == ""
    assert stream.finish() == ('<tool_call>\n{"name": "add", "argu', ())


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0}, {"typical_p": 0.9}, {"tfs_z": 0.9}, {"mirostat": 1}, {"mirostat": 2}, {"min_p": 0.1},
     {"top_k": 0, "top_p": 1.0}, {"repeat_penalty": 1.3, "frequency_penalty": 0.5, "presence_penalty": 0.5}],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_every_sampler_keeps_to_the_mask(options):
    from airoboros_ggml.generation.options import SamplingOptions
    from airoboros_ggml.generation.sampling import make_sampler

    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)  # float32 (n_vocab,)
    bitmask = np.zeros(32, dtype=np.int32)
    bitmask[0] = 0b1011_0110  # tokens 1, 2, 4, 5, 7
    apply_bitmask(logits, bitmask)
    sampler = make_sampler(SamplingOptions(seed=1, **options), 1000)
    assert {sampler.sample(logits, list(range(20))) for _ in range(40)} <= {1, 2, 4, 5, 7}
