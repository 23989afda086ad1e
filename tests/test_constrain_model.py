"""Constrained generation through the Model API on a tiny random-weight model (fast plumbing checks).

Whatever the weights, a constrained output must be a sentence of its grammar; grammars here are finite, so
generation ends when the grammar is complete (only EOS is left allowed).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import pytest

import airoboros_ggml as ag
from airoboros_ggml import FileType, GrammarError, ToolCall
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

HP = tiny_hparams(n_ctx_train=2048)  # the tool instructions are ~900 tiny-vocabulary tokens
PICK = {
    "type": "function",
    "function": {
        "name": "pick",
        "parameters": {"type": "object", "properties": {"color": {"enum": ["red", "green"]}},
                       "required": ["color"], "additionalProperties": False},
    },
}
STOP = {"type": "function", "function": {"name": "stop", "parameters": {"type": "object", "properties": {},
                                                                         "additionalProperties": False}}}
ASK = [{"role": "user", "content": "pick a color"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("constrain") / "tiny.gguf"
    write_gguf(path, HP, tiny_vocab(HP.n_vocab), random_llama_tensors(HP, FileType.MOSTLY_Q4_0))
    return ag.load(path, prompt_format="chatml")


def test_regex_stream_equals_complete(model):
    kwargs = {"regex": "(yes|no|maybe)[.!]", "temperature": 1.0, "seed": 7, "max_tokens": 20}
    out = model.complete("Answer:", **kwargs)
    chunks = list(model.stream("Answer:", **kwargs))
    assert re.fullmatch(kwargs["regex"], out.text) and out.finish_reason == "stop"
    assert "".join(c.text for c in chunks) == out.text and [t for c in chunks for t in c.token_ids] == out.tokens


def test_json_schema_and_json_mode(model):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
              "required": ["ok", "n"], "additionalProperties": False}
    for seed in range(3):
        value = json.loads(model.chat(ASK, json_schema=schema, temperature=1.0, seed=seed).text)
        assert set(value) == {"ok", "n"} and value["n"] in (1, 2, 3)
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    assert json.loads(model.chat(ASK, response_format=fmt, seed=1).text)["n"] in (1, 2, 3)


def test_tool_calls_required_named_and_streamed(model):
    out = model.chat(ASK, tools=[PICK, STOP], tool_choice="required", temperature=1.0, seed=3)
    assert out.finish_reason == "tool_calls" and out.text == "" and len(out.tool_calls) == 1
    call = out.tool_calls[0]
    assert isinstance(call, ToolCall) and (call.name, call.arguments) in (
        ("pick", {"color": "red"}), ("pick", {"color": "green"}), ("stop", {}))
    named = model.chat(ASK, tools=[PICK, STOP], tool_choice={"type": "function", "function": {"name": "stop"}})
    assert [(c.name, c.arguments) for c in named.tool_calls] == [("stop", {})]
    chunks = list(model.stream_chat(ASK, tools=[PICK], tool_choice="required", seed=4))
    assert all(c.text == "" for c in chunks) and chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].tool_calls[0].name == "pick" and all(not c.tool_calls for c in chunks[:-1])
    assert sum(len(c.token_ids) for c in chunks) == chunks[-1].usage.completion_tokens


def test_async_twins_pass_tools_and_constraints(model):
    async def run():
        out = await model.achat(ASK, tools=[PICK], tool_choice="required", seed=5)
        chunks = [c async for c in model.astream_chat(ASK, regex="(a|b)c", seed=5)]
        return out, chunks

    out, chunks = asyncio.run(run())
    assert out.finish_reason == "tool_calls" and out.tool_calls[0].name == "pick"
    assert "".join(c.text for c in chunks) in ("ac", "bc")


def test_grammar_errors_come_before_any_token_and_the_model_stays_usable(model):
    with pytest.raises(GrammarError, match="unknown_rule"):
        model.stream("x", grammar='root ::= "a" unknown_rule')  # raised by the call, not the first next()
    with pytest.raises(GrammarError, match="not among the tools"):
        model.stream_chat(ASK, tools=[PICK], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert model.complete("x", grammar='root ::= "ok"', max_tokens=8).text == "ok"


def test_unconstrained_calls_do_not_import_llguidance(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, HP, tiny_vocab(HP.n_vocab), random_llama_tensors(HP, FileType.MOSTLY_Q4_0))
    code = (
        "import sys, airoboros_ggml as ag\n"
        f"m = ag.load({str(path)!r})\n"
        "m.complete('hi', max_tokens=2); m.chat([{'role': 'user', 'content': 'hi'}], max_tokens=2)\n"
        "print('llguidance' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
