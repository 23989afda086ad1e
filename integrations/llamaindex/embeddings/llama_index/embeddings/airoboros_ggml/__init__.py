"""LlamaIndex embeddings from GGML v3 (.bin) and GGUF Llama models run by airoboros-ggml."""

from llama_index.embeddings.airoboros_ggml.base import AiroborosGGMLEmbedding

__version__ = "0.1.0"

__all__ = ["AiroborosGGMLEmbedding", "__version__"]
