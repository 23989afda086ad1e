"""airoboros-ggml: run Llama-2 GGML v3 (.bin) and GGUF models with numpy + numba."""

from __future__ import annotations

from .errors import ContextOverflowError, ModelFormatError
from .ggml_types import FileType, GGMLType
from .hparams import HParams
from .vocab import TokenType, Vocab

__version__ = "0.1.0"

__all__ = [
    "ContextOverflowError",
    "FileType",
    "GGMLType",
    "HParams",
    "ModelFormatError",
    "TokenType",
    "Vocab",
    "__version__",
]
