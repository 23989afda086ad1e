"""Model file formats: GGJT v3 and GGUF readers, writers, and the common :class:`ModelFile`."""

from .model_file import ModelFile, TensorInfo
from .reader import open_model_file, read_vocab
from .tensor_names import ggml_to_gguf, gguf_to_ggml
from .writer import LazyTensor, RawTensor, write_ggml, write_gguf

__all__ = [
    "LazyTensor",
    "ModelFile",
    "RawTensor",
    "TensorInfo",
    "ggml_to_gguf",
    "gguf_to_ggml",
    "open_model_file",
    "read_vocab",
    "write_ggml",
    "write_gguf",
]
