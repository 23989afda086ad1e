"""airoboros-ggml: run Llama-2 GGML v3 (.bin) and GGUF models with numpy + numba."""

from __future__ import annotations

from .constrain.tools import ToolCall
from .errors import (
    ContextOverflowError,
    ConversionError,
    DownloadError,
    GrammarError,
    ModelFormatError,
    OutputFileError,
)
from .formats import ModelFile, open_model_file
from .generation.options import SamplingOptions
from .generation.results import Chunk, Completion, Timings, Usage
from .generation.templates import PromptTemplate, get_template
from .ggml_types import FileType, GGMLType
from .hparams import HParams
from .model import Model, load, load_shared
from .runtime.options import LoadOptions
from .tokenizer import Tokenizer
from .tools.convert import convert_file
from .tools.quantize import quantize_file
from .vocab import TokenType, Vocab

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "Completion",
    "ContextOverflowError",
    "ConversionError",
    "DownloadError",
    "GrammarError",
    "LoadOptions",
    "Model",
    "ModelFile",
    "PromptTemplate",
    "SamplingOptions",
    "Timings",
    "Tokenizer",
    "ToolCall",
    "Usage",
    "convert_file",
    "get_template",
    "load",
    "load_shared",
    "open_model_file",
    "quantize_file",
    "FileType",
    "GGMLType",
    "HParams",
    "ModelFormatError",
    "OutputFileError",
    "TokenType",
    "Vocab",
    "__version__",
]
