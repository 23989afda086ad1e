"""LangChain integration for airoboros-ggml: local GGML v3 / GGUF Llama models as LangChain components."""

from importlib import metadata

from .chat_models import ChatAiroborosGGML
from .embeddings import AiroborosGGMLEmbeddings
from .llms import AiroborosGGML

try:
    __version__ = metadata.version(__package__)
except metadata.PackageNotFoundError:  # run from a source tree without installing
    __version__ = ""

__all__ = ["AiroborosGGML", "AiroborosGGMLEmbeddings", "ChatAiroborosGGML", "__version__"]
