"""``AiroborosGGMLEmbeddings``: sentence embeddings from a GGML v3 / GGUF Llama model."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict

from ._settings import ModelSettings


class AiroborosGGMLEmbeddings(ModelSettings, Embeddings):
    """Embeddings from a local model: the mean over tokens of its final hidden state (``Model.embed``).

    A list of documents is embedded in one batched call (``Model.embed_batch``); the vectors have the
    model's hidden size (576 for SmolLM2-135M, 4096 for a 7B Llama-2). The async methods run in a worker
    thread, so the event loop keeps running.

    Example:
        .. code-block:: python

            from langchain_airoboros_ggml import AiroborosGGMLEmbeddings

            embeddings = AiroborosGGMLEmbeddings(model_path="smollm2")
            vectors = embeddings.embed_documents(["a llama", "an alpaca"])
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents: one list of floats per text."""
        return self.client.embed_batch(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        return self.client.embed(text).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents in a worker thread."""
        return (await self.client.aembed_batch(list(texts))).tolist()

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query in a worker thread."""
        return (await self.client.aembed_batch([text]))[0].tolist()
