"""``AiroborosGGML``: a LlamaIndex ``CustomLLM`` over an ``airoboros_ggml.Model``.

The adapter only maps: prompt templates, stop strings, streaming, context limits, async and thread safety
all live in ``airoboros_ggml`` (``Model.stream``/``stream_chat`` and their async twins). Chat messages and
unformatted completions go to the model's chat template (``Model.stream_chat``), which adds the template's
role markers as stop strings; a ``formatted=True`` prompt, or a prompt made by a user-supplied
``completion_to_prompt`` / ``messages_to_prompt``, goes to ``Model.stream`` as raw text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.base.llms.generic_utils import (
    astream_completion_response_to_chat_response,
    completion_response_to_chat_response,
    stream_completion_response_to_chat_response,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import BaseModel, ConfigDict, PrivateAttr, create_model
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.prompts import PromptTemplate

from airoboros_ggml import Chunk, Completion, SamplingOptions
from airoboros_ggml.generation.options import CONSTRAINTS, optional_fields
from airoboros_ggml.model import adapter_fields, shared_model

if TYPE_CHECKING:
    from llama_index.core.program.utils import FlexibleModel

__all__ = ["AiroborosGGML"]

OutputT = TypeVar("OutputT", bound=BaseModel)

# model_path / model, and every core option as a field of the same name; None means "the core's default".
# ``prompt_format`` goes to the loader with the load options; ``seed`` is a sampling option here.
_ModelFields = create_model(
    "_ModelFields", __config__=ConfigDict(arbitrary_types_allowed=True, protected_namespaces=()), **adapter_fields()
)
_SamplingFields = create_model("_SamplingFields", **optional_fields(SamplingOptions))
_MODEL_NAMES = tuple(_ModelFields.model_fields)
_SAMPLING_NAMES = tuple(_SamplingFields.model_fields)

Prompt = str | list[dict[str, str]]
"""What goes to the core: raw prompt text (``Model.stream``) or chat messages (``Model.stream_chat``)."""


class AiroborosGGML(CustomLLM, _ModelFields, _SamplingFields):
    """A GGML v3 / GGUF Llama model as a LlamaIndex LLM.

    The model is ``model_path`` (loaded with ``prompt_format`` and every :class:`airoboros_ggml.LoadOptions`
    field: ``n_ctx``, ``n_threads``, ``n_batch``, ``rope_freq_base``, ...) or an already loaded ``model``; every
    :class:`airoboros_ggml.SamplingOptions` field (``temperature``, ``top_k``, ``top_p``, ``min_p``,
    ``repeat_penalty``, ``seed``, ``max_tokens``, ``stop``, ``grammar``, ``json_schema``, ...) is a field of the
    same name. None (the default) means the core's default, e.g. ``max_tokens=None`` generates until EOS, a stop
    string or a full context. Keyword arguments of a call (sampling options, ``stop``, ...) apply to that call
    only and never change the instance.

    Example:
        ```python
        from llama_index.llms.airoboros_ggml import AiroborosGGML

        llm = AiroborosGGML(model_path="airoboros-l2-7b-gpt4-1.4.1.ggmlv3.q4_K_M.bin", n_ctx=4096, temperature=0.7)
        print(llm.complete("Why is the sky blue?"))
        ```
    """

    model_config = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True)

    _uses_model_template: tuple[bool, bool] = PrivateAttr(default=(True, True))

    def __init__(self, **data: Any) -> None:
        own_completion = data.get("completion_to_prompt") is not None
        own_messages = data.get("messages_to_prompt") is not None
        super().__init__(**data)
        self._uses_model_template = (not own_completion, not own_messages)
        self.model = shared_model(self.model, **{name: getattr(self, name) for name in _MODEL_NAMES if name != "model"})
        SamplingOptions(**self._sampling({}))  # bad sampling options fail here, not at the first call
        # by default both formatters render with the model's chat template (what chat/complete then send)
        if not own_completion:
            self.completion_to_prompt = lambda prompt: self.model.format_chat(_core_messages([prompt]))
        if not own_messages:
            self.messages_to_prompt = lambda messages: self.model.format_chat(_core_messages(messages))

    @classmethod
    def class_name(cls) -> str:
        """Name used when LlamaIndex serializes the LLM."""
        return "AiroborosGGML"

    @property
    def metadata(self) -> LLMMetadata:
        """The loaded model's real context window; ``num_output`` is ``max_tokens`` (-1 when unbounded)."""
        return LLMMetadata(
            context_window=self.model.n_ctx,
            num_output=-1 if self.max_tokens in (None, -1) else self.max_tokens,
            is_chat_model=True,
            model_name=self.model.file.path.name,
        )

    def tokenize(self, text: str) -> list[int]:
        """The model's token ids of ``text`` (no BOS).

        ``Settings.tokenizer = llm.tokenize`` makes LlamaIndex count tokens (prompt packing, memory limits,
        ``TokenCountingHandler``) as the model does.
        """
        return self.model.tokenizer.tokenize(text, add_bos=False, special=True)

    # ------------------------------------------------------------------ mapping

    def _sampling(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The instance's sampling options overlaid with this call's (a new dict; the instance is untouched).

        A call's output constraint (``grammar``, ``json_schema``, ``response_format``, ``regex``) replaces the
        instance's, as any other option does.
        """
        options = {name: getattr(self, name) for name in _SAMPLING_NAMES if getattr(self, name) is not None}
        if any(kwargs.get(name) is not None for name in CONSTRAINTS):
            options = {name: value for name, value in options.items() if name not in CONSTRAINTS}
        return {**options, **kwargs}

    def _completion_prompt(self, prompt: str, formatted: bool) -> Prompt:
        if formatted:
            return prompt
        if self._uses_model_template[0]:
            return _core_messages([prompt])
        return self.completion_to_prompt(prompt)

    def _chat_prompt(self, messages: Sequence[ChatMessage]) -> Prompt:
        if self._uses_model_template[1]:
            return _core_messages(messages)
        return self.messages_to_prompt(messages)

    def _stream(self, prompt: Prompt, kwargs: dict[str, Any]) -> Iterator[Chunk]:
        sampling = self._sampling(kwargs)
        if isinstance(prompt, str):
            return self.model.stream(prompt, **sampling)
        return self.model.stream_chat(prompt, **sampling)

    def _astream(self, prompt: Prompt, kwargs: dict[str, Any]) -> AsyncIterator[Chunk]:
        sampling = self._sampling(kwargs)
        if isinstance(prompt, str):
            return self.model.astream(prompt, **sampling)
        return self.model.astream_chat(prompt, **sampling)

    def _complete(self, prompt: Prompt, kwargs: dict[str, Any]) -> Completion:
        sampling = self._sampling(kwargs)
        if isinstance(prompt, str):
            return self.model.complete(prompt, **sampling)
        return self.model.chat(prompt, **sampling)

    async def _acomplete(self, prompt: Prompt, kwargs: dict[str, Any]) -> Completion:
        sampling = self._sampling(kwargs)
        if isinstance(prompt, str):
            return await self.model.acomplete(prompt, **sampling)
        return await self.model.achat(prompt, **sampling)

    # ------------------------------------------------------------------ completion

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Generate a completion; ``formatted=True`` passes the prompt to the model as is."""
        return _response(self._complete(self._completion_prompt(prompt, formatted), kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a completion: each response has the new ``delta`` and the cumulative ``text``."""
        return _responses(self._stream(self._completion_prompt(prompt, formatted), kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`: the engine runs in a worker thread, the event loop keeps running."""
        return _response(await self._acomplete(self._completion_prompt(prompt, formatted), kwargs))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`: responses arrive as the tokens are generated."""
        return _aresponses(self._astream(self._completion_prompt(prompt, formatted), kwargs))

    # ------------------------------------------------------------------ chat

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer a conversation formatted with the model's chat template (or ``messages_to_prompt``)."""
        return completion_response_to_chat_response(_response(self._complete(self._chat_prompt(messages), kwargs)))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the answer to a conversation."""
        return stream_completion_response_to_chat_response(
            _responses(self._stream(self._chat_prompt(messages), kwargs))
        )

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat` (the engine runs in a worker thread)."""
        return completion_response_to_chat_response(
            _response(await self._acomplete(self._chat_prompt(messages), kwargs))
        )

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`: responses arrive as the tokens are generated."""
        return astream_completion_response_to_chat_response(
            _aresponses(self._astream(self._chat_prompt(messages), kwargs))
        )

    # ------------------------------------------------------------------ structured output
    # LlamaIndex's text-completion program formats the prompt (with the schema as instructions) and parses the
    # reply; decoding under the class's JSON schema (the core's constrained generation) makes the reply valid.

    def structured_predict(
        self,
        output_cls: type[OutputT],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> OutputT:
        """An ``output_cls`` instance: the answer to ``prompt`` decoded under the class's JSON schema."""
        return super().structured_predict(output_cls, prompt, _under_schema(output_cls, llm_kwargs), **prompt_args)

    async def astructured_predict(
        self,
        output_cls: type[OutputT],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> OutputT:
        """Async :meth:`structured_predict` (the engine runs in a worker thread)."""
        return await super().astructured_predict(
            output_cls, prompt, _under_schema(output_cls, llm_kwargs), **prompt_args
        )

    def stream_structured_predict(
        self,
        output_cls: type[OutputT],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Generator[OutputT | FlexibleModel, None, None]:
        """Partial ``output_cls`` objects as the JSON is generated, the last one complete."""
        return super().stream_structured_predict(
            output_cls, prompt, _under_schema(output_cls, llm_kwargs), **prompt_args
        )

    async def astream_structured_predict(
        self,
        output_cls: type[OutputT],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> AsyncGenerator[OutputT | FlexibleModel, None]:
        """Async :meth:`stream_structured_predict`."""
        return await super().astream_structured_predict(
            output_cls, prompt, _under_schema(output_cls, llm_kwargs), **prompt_args
        )


def _under_schema(output_cls: type[BaseModel], llm_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``llm_kwargs`` that decode under ``output_cls``'s JSON schema, unless the call constrains the output itself."""
    llm_kwargs = dict(llm_kwargs or {})
    if not any(llm_kwargs.get(name) is not None for name in CONSTRAINTS):
        llm_kwargs["json_schema"] = _closed_schema(output_cls)
    return llm_kwargs


def _closed_schema(output_cls: type[BaseModel]) -> dict[str, Any]:
    """The class's JSON schema, with ``additionalProperties: false`` on every object that leaves it open.

    The parsed object ignores keys it does not declare (pydantic's default), and a small model left free to add
    keys wanders into them until ``max_tokens`` cuts the JSON. A class with ``extra="allow"`` (whose schema says
    ``additionalProperties: true``) stays open.
    """
    schema = output_cls.model_json_schema()
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and isinstance(node.get("properties"), dict):
                node.setdefault("additionalProperties", False)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return schema


def _core_messages(messages: Sequence[ChatMessage | str]) -> list[dict[str, str]]:
    """LlamaIndex messages (a bare string: a user message) as the core's chat message dicts."""
    return [
        {"role": "user", "content": m} if isinstance(m, str) else {"role": m.role.value, "content": m.content or ""}
        for m in messages
    ]


def _raw(chunk: Chunk | Completion) -> dict[str, Any]:
    """``raw`` of a final response: usage (read by ``TokenCountingHandler``), finish reason, timings."""
    usage = chunk.usage
    return {
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cached_tokens": usage.cached_tokens,
        },
        "finish_reason": chunk.finish_reason,
        "timings": dataclasses.asdict(chunk.timings),
    }


def _response(completion: Completion) -> CompletionResponse:
    return CompletionResponse(text=completion.text, raw=_raw(completion))


def _responses(chunks: Iterator[Chunk]) -> CompletionResponseGen:
    text = ""
    for chunk in chunks:
        text += chunk.text
        yield CompletionResponse(text=text, delta=chunk.text, raw=_raw(chunk) if chunk.usage else None)


async def _aresponses(chunks: AsyncIterator[Chunk]) -> CompletionResponseAsyncGen:
    text = ""
    async for chunk in chunks:
        text += chunk.text
        yield CompletionResponse(text=text, delta=chunk.text, raw=_raw(chunk) if chunk.usage else None)
