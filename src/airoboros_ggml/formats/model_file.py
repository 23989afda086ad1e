"""The object every reader returns: hyperparameters, vocabulary and memory-mapped tensors."""

from __future__ import annotations

import dataclasses
import mmap
from pathlib import Path
from typing import Any

import numpy as np

from ..ggml_types import LAYOUTS, GGMLType
from ..hparams import HParams
from ..vocab import Vocab


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a model file.

    ``shape`` is in numpy order (rows first): a weight with ggml dims ``ne = (n_in, n_out)`` has
    ``shape == (n_out, n_in)``, so each row is one output's weights, stored contiguously.
    """

    name: str
    """Name as stored in the file."""
    ggml_type: GGMLType
    """Element type."""
    shape: tuple[int, ...]
    """Numpy-order shape (``ne`` reversed)."""
    offset: int
    """Absolute byte offset of the data in the file."""
    data: np.ndarray
    """uint8 (nbytes,): read-only zero-copy view of the raw bytes."""

    @property
    def ne(self) -> tuple[int, ...]:
        """ggml-order dims (``ne0`` = row length first)."""
        return tuple(reversed(self.shape))

    @property
    def n_elements(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of data."""
        return int(self.data.nbytes)

    @property
    def rows(self) -> np.ndarray:
        """uint8 (n_rows, row_bytes): the raw data viewed as one row of blocks per output."""
        return self.data.reshape(-1, LAYOUTS[self.ggml_type].row_bytes(self.shape[-1]))


@dataclasses.dataclass
class ModelFile:
    """A parsed model file: what :func:`airoboros_ggml.open_model_file` returns."""

    path: Path
    """The file."""
    format: str
    """Container and version: ``"ggjt-v3"``, ``"gguf-v2"`` or ``"gguf-v3"``."""
    hparams: HParams
    """Hyperparameters (with overrides applied)."""
    vocab: Vocab
    """Vocabulary as stored."""
    tensors: dict[str, TensorInfo]
    """Tensors by file name, in file order."""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    """GGUF key/values (empty for GGML files)."""
    inferred: dict[str, str] = dataclasses.field(default_factory=dict)
    """Hyperparameters not stored in the file -> how their value was obtained."""
    mmap: mmap.mmap | None = dataclasses.field(default=None, repr=False)
    """The memory map backing the tensor views (kept alive with the object)."""

    @property
    def n_params(self) -> int:
        """Total number of weights."""
        return sum(t.n_elements for t in self.tensors.values())

    @property
    def tensor_bytes(self) -> int:
        """Total bytes of tensor data."""
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def bits_per_weight(self) -> float:
        """Average bits per weight over all tensors."""
        return 8.0 * self.tensor_bytes / max(1, self.n_params)

    def kv_cache_bytes(self, n_ctx: int | None = None) -> int:
        """Bytes of an f16 K/V cache for ``n_ctx`` positions (default: the training context)."""
        hp = self.hparams
        n_ctx = hp.n_ctx_train if n_ctx is None else n_ctx
        return 2 * hp.n_layer * n_ctx * hp.n_embd_kv * 2

    def tensor(self, name: str) -> TensorInfo:
        """Return a tensor by name, with a clear error if missing."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def close(self) -> None:
        """Release the memory map (tensor views become invalid)."""
        self.tensors = {}
        if self.mmap is not None:
            try:
                self.mmap.close()
            except BufferError:  # views still exported; the map closes when they are gone
                pass
            self.mmap = None

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_type(t: GGMLType) -> str:
    """``"Q4_K (4.50 bpw)"``."""
    return f"{t.name} ({LAYOUTS[t].bits_per_weight:.2f} bpw)"
