"""LlamaIndex LLM for GGML v3 (.bin) and GGUF Llama models run by airoboros-ggml."""

from llama_index.llms.airoboros_ggml.base import AiroborosGGML

__version__ = "0.1.0"

__all__ = ["AiroborosGGML", "__version__"]
