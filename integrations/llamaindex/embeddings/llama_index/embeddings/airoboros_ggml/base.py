"""``AiroborosGGMLEmbedding``: a LlamaIndex ``BaseEmbedding`` over ``airoboros_ggml.Model.embed_batch``.

The embedding of a text is the model's mean-pooled final hidden state (``Model.embed``); batches go to
``Model.embed_batch`` under one lock hold, async calls to ``Model.aembed_batch`` (a worker thread). Built
with the same file and load options as an ``AiroborosGGML`` LLM, it shares that LLM's loaded model
(``airoboros_ggml.load_shared``), or it takes a loaded ``model`` directly.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, create_model

from airoboros_ggml.model import adapter_fields, shared_model

__all__ = ["AiroborosGGMLEmbedding"]

# model_path / model, and every load option as a field of the same name (None: the core's default); the prompt
# format does not change an embedding but is taken so that an LLM's file and options name the same shared model.
_ModelFields = create_model(
    "_ModelFields", __config__=ConfigDict(arbitrary_types_allowed=True, protected_namespaces=()), **adapter_fields()
)
_MODEL_NAMES = tuple(_ModelFields.model_fields)


class AiroborosGGMLEmbedding(BaseEmbedding, _ModelFields):
    """Sentence embeddings (mean-pooled final hidden states) from a GGML v3 / GGUF Llama model.

    Example:
        ```python
        from llama_index.embeddings.airoboros_ggml import AiroborosGGMLEmbedding

        embed_model = AiroborosGGMLEmbedding(model_path="smollm2")
        vector = embed_model.get_text_embedding("Llamas are camelids.")
        ```
    """

    model_config = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.model = shared_model(self.model, **{name: getattr(self, name) for name in _MODEL_NAMES if name != "model"})
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
