"""LangChain messages to core chat dicts; tool choices and tool binding."""

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_airoboros_ggml import ChatAiroborosGGML
from langchain_airoboros_ggml._messages import to_core_messages
from langchain_airoboros_ggml.chat_models import _tool_choice


def test_roles_names_and_tool_fields():
    messages = [
        SystemMessage("Be brief."),
        SystemMessage("Answer in English."),
        HumanMessage("What is 1 + 2?", name="ada"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1", "type": "tool_call"}]),
        ToolMessage("3", tool_call_id="call-1", name="add"),
        ChatMessage(role="assistant", content="It is 3."),
    ]
    assert to_core_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "What is 1 + 2?", "name": "ada"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call-1", "name": "add", "arguments": {"a": 1, "b": 2}}],
        },
        {"role": "tool", "content": "3", "name": "add", "tool_call_id": "call-1"},
        {"role": "assistant", "content": "It is 3."},
    ]


def test_text_blocks_are_joined_and_tool_use_blocks_skipped():
    message = AIMessage(
        [{"type": "text", "text": "some "}, "text", {"type": "tool_use", "id": "x", "name": "f", "input": {}}]
    )
    assert to_core_messages([message])[0]["content"] == "some text"


def test_image_content_is_refused():
    message = HumanMessage([{"type": "text", "text": "What is this?"}, {"type": "image", "url": "http://x/y.png"}])
    with pytest.raises(ValueError, match="'image' content is not supported"):
        to_core_messages([message])


@pytest.mark.parametrize(
    ("choice", "core"),
    [
        (None, None),
        (False, None),
        (True, "required"),
        ("any", "required"),
        ("required", "required"),
        ("auto", "auto"),
        ("none", "none"),
        ("add", {"type": "function", "function": {"name": "add"}}),
        ({"type": "function", "function": {"name": "add"}}, {"type": "function", "function": {"name": "add"}}),
    ],
)
def test_tool_choice_spellings(choice, core):
    assert _tool_choice(choice) == core


def test_bind_tools_passes_openai_tool_dicts():
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bound = ChatAiroborosGGML(model_path="smollm2").bind_tools([add], tool_choice="add")
    (spec,) = bound.kwargs["tools"]
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "add"
    assert spec["function"]["parameters"]["required"] == ["a", "b"]
    assert bound.kwargs["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert "tool_choice" not in ChatAiroborosGGML(model_path="smollm2").bind_tools([add]).kwargs


class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str


@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_structured_output_binds_a_core_constraint(method):
    runnable = ChatAiroborosGGML(model_path="smollm2").with_structured_output(Joke, method=method)
    kwargs = runnable.first.kwargs
    assert kwargs["ls_structured_output_format"] == {"kwargs": {"method": method}, "schema": Joke}
    if method == "json_schema":
        assert kwargs["json_schema"]["required"] == ["setup", "punchline"]
    elif method == "json_mode":
        assert kwargs["response_format"] == {"type": "json_object"}
    else:
        assert kwargs["tools"][0]["function"]["name"] == "Joke"
        assert kwargs["tool_choice"] == {"type": "function", "function": {"name": "Joke"}}
    with_raw = ChatAiroborosGGML(model_path="smollm2").with_structured_output(Joke, method=method, include_raw=True)
    assert list(with_raw.first.steps__) == ["raw"]


def test_strict_schemas_allow_no_other_properties():
    chat = ChatAiroborosGGML(model_path="smollm2")
    schema = chat.with_structured_output(Joke, method="json_schema", strict=True).first.kwargs["json_schema"]
    assert schema["additionalProperties"] is False
    (tool,) = chat.bind_tools([Joke], strict=True).kwargs["tools"]
    assert tool["function"]["parameters"]["additionalProperties"] is False
    (tool,) = chat.with_structured_output(Joke, method="function_calling", strict=True).first.kwargs["tools"]
    assert tool["function"]["parameters"]["additionalProperties"] is False
    assert "additionalProperties" not in chat.with_structured_output(Joke).first.kwargs["json_schema"]


def test_unknown_structured_output_method_is_refused():
    with pytest.raises(ValueError, match="method must be"):
        ChatAiroborosGGML(model_path="smollm2").with_structured_output(Joke, method="xml")
