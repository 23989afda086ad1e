"""``ChatAiroborosGGML``: a GGML v3 / GGUF Llama model as a LangChain chat model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict

from ._messages import ai_message, ai_message_chunk, to_core_messages
from ._settings import GenerationSettings


class ChatAiroborosGGML(BaseChatModel, GenerationSettings):
    """A local GGML v3 (``.bin``) or GGUF Llama model as a chat model.

    Messages (system, human, AI, tool; several system messages; ``name``) are rendered by the model's
    prompt template (Airoboros by default, ``prompt_format="auto"`` for a GGUF file's own), whose role
    markers are stop strings. Replies carry ``usage_metadata`` and ``response_metadata["model_name"]`` /
    ``["finish_reason"]``. Tool calls (:meth:`bind_tools`) and structured output
    (:meth:`with_structured_output`) are decoded under a grammar, so even a small model returns calls and
    objects that parse.

    Example:
        .. code-block:: python

            from langchain_airoboros_ggml import ChatAiroborosGGML

            chat = ChatAiroborosGGML(model_path="airoboros-l2-7b-gpt4-1.4.1.ggmlv3.q4_K_M.bin")
            print(chat.invoke([("system", "Answer in one word."), ("human", "Capital of France?")]).content)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    streaming: bool = False
    """Generate through the streaming path in ``invoke`` too, so callback handlers receive every token."""

    @property
    def _llm_type(self) -> str:
        return "airoboros-ggml-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Model file (path, format, quantization), prompt format and sampling values."""
        return self._identifying()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls_params("chat", stop, **kwargs)

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The core's chat messages and call options (sampling, plus tools when bound)."""
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        options = self._sampling(stop, kwargs)
        if tools:
            options["tools"] = tools
            if tool_choice is not None:
                options["tool_choice"] = tool_choice
        return to_core_messages(messages), options

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        core_messages, options = self._request(messages, stop, kwargs)
        completion = self.client.chat(core_messages, **options)
        return ChatResult(generations=[ChatGeneration(message=ai_message(completion, self.model_name))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        core_messages, options = self._request(messages, stop, kwargs)
        completion = await self.client.achat(core_messages, **options)
        return ChatResult(generations=[ChatGeneration(message=ai_message(completion, self.model_name))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        core_messages, options = self._request(messages, stop, kwargs)
        for chunk in self.client.stream_chat(core_messages, **options):
            generation = ChatGenerationChunk(message=ai_message_chunk(chunk, self.model_name))
            if run_manager is not None:
                run_manager.on_llm_new_token(generation.text, chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        core_messages, options = self._request(messages, stop, kwargs)
        chunks = self.client.astream_chat(core_messages, **options)
        async with aclosing(chunks):  # a consumer that stops early stops the generation
            async for chunk in chunks:
                generation = ChatGenerationChunk(message=ai_message_chunk(chunk, self.model_name))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(generation.text, chunk=generation)
                yield generation

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools to the model; calls come back in ``AIMessage.tool_calls`` (``tool_call_chunks`` streamed).

        Args:
            tools: LangChain tools, functions, pydantic classes, TypedDicts or OpenAI tool dicts.
            tool_choice: ``"auto"`` (text or a call, the default), ``"none"``, ``"any"``/``"required"``/
                ``True`` (some tool must be called) or a tool's name (that tool must be called).
            strict: OpenAI's strict schemas (LangChain's conversion): every property required, no other
                properties in the arguments.
            **kwargs: further call options to bind (sampling fields).
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        choice = _tool_choice(tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that returns objects of ``schema`` (a pydantic class, TypedDict or JSON Schema dict).

        Args:
            schema: the output schema; a pydantic class gives pydantic objects, the others dicts.
            method: ``"json_schema"`` (the reply is JSON decoded under the schema), ``"function_calling"``
                (a forced call of a tool whose parameters are the schema) or ``"json_mode"`` (any JSON
                object; say in the prompt which keys you want).
            include_raw: return ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead.
            strict: OpenAI's strict schemas (LangChain's conversion): every property required, no other
                properties. Decoding follows the schema either way.
            **kwargs: further call options to bind (sampling fields).
        """
        structured_format = {"kwargs": {"method": method}, "schema": schema}
        pydantic_schema = isinstance(schema, type) and is_basemodel_subclass(schema)
        if method == "function_calling":
            tool_name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools(
                [schema], tool_choice=tool_name, strict=strict, ls_structured_output_format=structured_format, **kwargs
            )
            parser: Runnable = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if pydantic_schema
                else JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            constraint = (
                {"json_schema": convert_to_json_schema(schema, strict=strict)}
                if method == "json_schema"
                else {"response_format": {"type": "json_object"}}
            )
            llm = self.bind(ls_structured_output_format=structured_format, **constraint, **kwargs)
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic_schema else JsonOutputParser()
        else:
            raise ValueError(f"method must be 'json_schema', 'json_mode' or 'function_calling', got {method!r}")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")


def _tool_choice(choice: str | bool | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """LangChain's tool_choice spellings in the core's: "auto", "none", "required" or a named function."""
    if choice is None or choice is False:
        return None
    if choice is True or choice == "any":
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice
