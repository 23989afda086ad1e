"""``AiroborosGGML``: a GGML v3 / GGUF Llama model as a LangChain text-completion ``LLM``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

from airoboros_ggml import Chunk, Model
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.llms import LLM
from langchain_core.outputs import GenerationChunk
from pydantic import ConfigDict

from ._settings import GenerationSettings


class AiroborosGGML(LLM, GenerationSettings):
    """A local GGML v3 (``.bin``) or GGUF Llama model answering text prompts.

    The prompt is what the user asked: it is wrapped in the model's prompt template (Airoboros by default,
    whose ``USER:`` marker is then a stop string); ``prompt_format="raw"`` passes it through untouched.
    Generation runs until EOS, a stop string or a full context window unless ``max_tokens`` is set.

    Example:
        .. code-block:: python

            from langchain_airoboros_ggml import AiroborosGGML

            llm = AiroborosGGML(model_path="airoboros-l2-7b-gpt4-1.4.1.ggmlv3.q4_K_M.bin", temperature=0.7)
            print(llm.invoke("Write a haiku about llamas."))
            for text in llm.stream("Name three rivers.", stop=["."]):
                print(text, end="", flush=True)

    Per-call keyword arguments override sampling fields for that call only
    (``llm.invoke(prompt, temperature=0)``); per-call ``stop`` strings are added to the instance's ``stop``.
    The async methods run the engine in a worker thread, so the event loop keeps running meanwhile.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    @property
    def _llm_type(self) -> str:
        return "airoboros-ggml"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Model file (path, format, quantization), prompt format and sampling values."""
        return self._identifying()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls_params("llm", stop, **kwargs)

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        model, options = self.client, self._sampling(stop, kwargs)
        if _passes_through(model):
            return model.complete(prompt, **options).text
        return model.chat(_user_turn(prompt), **options).text

    async def _acall(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        model, options = self.client, self._sampling(stop, kwargs)
        if _passes_through(model):
            return (await model.acomplete(prompt, **options)).text
        return (await model.achat(_user_turn(prompt), **options)).text

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        model, options = self.client, self._sampling(stop, kwargs)
        chunks = (
            model.stream(prompt, **options)
            if _passes_through(model)
            else model.stream_chat(_user_turn(prompt), **options)
        )
        for chunk in chunks:
            generation = _generation_chunk(chunk)
            if run_manager is not None:
                run_manager.on_llm_new_token(generation.text, chunk=generation)
            yield generation

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        model, options = self.client, self._sampling(stop, kwargs)
        chunks = (
            model.astream(prompt, **options)
            if _passes_through(model)
            else model.astream_chat(_user_turn(prompt), **options)
        )
        async with aclosing(chunks):  # a consumer that stops early stops the generation
            async for chunk in chunks:
                generation = _generation_chunk(chunk)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(generation.text, chunk=generation)
                yield generation


def _passes_through(model: Model) -> bool:
    return model.template.name == "raw"


def _user_turn(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _generation_chunk(chunk: Chunk) -> GenerationChunk:
    if chunk.finish_reason is None:
        return GenerationChunk(text=chunk.text)
    usage = chunk.usage
    info = {
        "finish_reason": chunk.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }
    return GenerationChunk(text=chunk.text, generation_info=info)
