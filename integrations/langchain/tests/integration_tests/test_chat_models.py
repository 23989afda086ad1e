"""ChatAiroborosGGML on SmolLM2 beyond the standard suite: prompt rendering, usage, finish reasons, stops."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_airoboros_ggml import ChatAiroborosGGML

from .conftest import CHAT


@pytest.fixture
def chat():
    return ChatAiroborosGGML(**CHAT)


@pytest.fixture(scope="module")
def exact_chat():
    return ChatAiroborosGGML(**CHAT, kv_reuse=False)


def test_instances_share_one_loaded_model(chat):
    assert ChatAiroborosGGML(**{**CHAT, "temperature": 0.7, "max_tokens": 5}).client is chat.client


def test_messages_are_rendered_by_the_model_template(chat, record_prompts):
    seen = record_prompts(chat.client)
    reply = chat.invoke(
        [
            SystemMessage("Be brief."),
            SystemMessage("Answer in English."),
            HumanMessage("What is 1 + 2?", name="ada"),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}]),
            ToolMessage("3", tool_call_id="c1", name="add"),
        ],
        max_tokens=8,
    )
    assert seen == [
        "<|im_start|>system\nBe brief.\n\nAnswer in English.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ]
    assert isinstance(reply, AIMessage) and reply.content


def test_usage_finish_reason_and_model_name(exact_chat):
    prompt = "Tell me a long story about a dragon."
    invoked = exact_chat.invoke(prompt, max_tokens=4)
    streamed = None
    for chunk in exact_chat.stream(prompt, max_tokens=4):
        streamed = chunk if streamed is None else streamed + chunk
    n_prompt = len(
        exact_chat.client.tokenizer.tokenize(
            exact_chat.client.format_chat([{"role": "user", "content": prompt}]), add_bos=True, special=True
        )
    )
    for message in (invoked, streamed):
        assert message.usage_metadata["input_tokens"] == n_prompt  # counted once in the stream
        assert message.usage_metadata["output_tokens"] == 4
        assert message.usage_metadata["total_tokens"] == n_prompt + 4
        assert message.response_metadata["finish_reason"] == "length"
        assert message.response_metadata["model_name"] == "smollm2"
    assert streamed.content == invoked.content
    done = exact_chat.invoke("Say hi.", max_tokens=200)
    assert done.response_metadata["finish_reason"] == "stop"


def test_stop_strings_apply_when_streaming(exact_chat):
    prompt = "Describe a sunny day at the beach in two sentences."
    full = exact_chat.invoke(prompt).content
    stop = full.split()[3]
    invoked = exact_chat.invoke(prompt, stop=[stop]).content
    streamed = "".join(chunk.content for chunk in exact_chat.stream(prompt, stop=[stop]))
    assert invoked == streamed == full[: full.find(stop)]


class Joke(BaseModel):
    """A joke with its punchline."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_tool_calls_invoked_and_streamed(exact_chat):
    llm = exact_chat.bind_tools([add], tool_choice="add", strict=True)
    prompt = "What is 2 plus 5? Use the tool."
    invoked = llm.invoke(prompt, max_tokens=64)
    (call,) = invoked.tool_calls
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
    assert all(isinstance(value, int) for value in call["args"].values())
    assert invoked.content == "" and invoked.response_metadata["finish_reason"] == "tool_calls"
    streamed = None
    for chunk in llm.stream(prompt, max_tokens=64):
        assert "<tool_call>" not in chunk.content
        streamed = chunk if streamed is None else streamed + chunk
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [(call["name"], call["args"])]
    assert streamed.tool_call_chunks[0]["id"] == streamed.tool_calls[0]["id"]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_parses(exact_chat, method):
    structured = exact_chat.with_structured_output(Joke, method=method, include_raw=True, max_tokens=96)
    result = structured.invoke("Tell me a joke about cats.")
    assert result["parsing_error"] is None, result["raw"]
    assert isinstance(result["parsed"], Joke)
