"""Constrained generation through the server and the batch scheduler: tools, response_format, bad grammars.

A tiny random-weight model loaded with two sequence slots, so every request here also runs its grammar
processor inside the continuous-batching scheduler.
"""

import json
import re

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import airoboros_ggml as ag  # noqa: E402
from airoboros_ggml import FileType  # noqa: E402
from airoboros_ggml.formats import write_gguf  # noqa: E402
from airoboros_ggml.serve import create_app  # noqa: E402
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab  # noqa: E402

HP = tiny_hparams(n_ctx_train=2048)  # the tool instructions are ~900 tiny-vocabulary tokens
PICK = {"type": "function", "function": {"name": "pick", "parameters": {
    "type": "object", "properties": {"color": {"enum": ["red", "green"]}}, "required": ["color"],
    "additionalProperties": False}}}
ASK = [{"role": "user", "content": "pick a color"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("constrained") / "tiny.gguf"
    write_gguf(path, HP, tiny_vocab(HP.n_vocab), random_llama_tensors(HP, FileType.MOSTLY_Q4_0))
    m = ag.load(path, prompt_format="chatml", n_seq=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def client(model):
    return TestClient(create_app(model, model_name="tiny"))


def test_complete_many_keeps_each_grammar(model):
    pattern = "(yes|no|maybe)[.!]"
    outs = model.complete_many(["Answer:", "Reply:", "Say:"], regex=pattern, temperature=1.0, seed=7, max_tokens=20)
    assert all(re.fullmatch(pattern, o.text) and o.finish_reason == "stop" for o in outs)


def test_tool_calls_in_chat_completions(client):
    body = client.post("/v1/chat/completions", json={"messages": ASK, "tools": [PICK], "tool_choice": "required",
                                                     "seed": 3, "temperature": 1.0}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "pick" and call["id"]
    assert json.loads(call["function"]["arguments"])["color"] in ("red", "green")

    request = {"messages": ASK, "tools": [PICK], "tool_choice": "required", "seed": 4, "stream": True}
    text = client.post("/v1/chat/completions", json=request).text
    events = [json.loads(x.removeprefix("data: ")) for x in text.split("\n\n") if x.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and calls[0][0]["function"]["name"] == "pick" and calls[0][0]["index"] == 0
    assert not any(d.get("content") for d in deltas)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_response_format_and_bad_constraints(client):
    schema = {"type": "object", "properties": {"n": {"enum": [1, 2, 3]}}, "required": ["n"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    body = client.post("/v1/chat/completions", json={"messages": ASK, "response_format": fmt, "seed": 1}).json()
    assert json.loads(body["choices"][0]["message"]["content"])["n"] in (1, 2, 3)
    named = {"type": "function", "function": {"name": "nope"}}
    response = client.post("/v1/chat/completions", json={"messages": ASK, "tools": [PICK], "tool_choice": named})
    assert response.status_code == 400 and "nope" in response.json()["error"]["message"]
    bad = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "no-such-type"}}}
    response = client.post("/v1/chat/completions", json={"messages": ASK, "response_format": bad})
    assert response.status_code == 400 and response.json()["error"]["message"]
