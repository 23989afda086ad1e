"""Llama hyperparameters as read from a model file."""

from __future__ import annotations

import dataclasses

from .ggml_types import FileType


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyperparameters of a Llama model.

    GGML v3 files lack several of these; readers derive them from tensor shapes or use the Llama-2
    defaults, and record which in :attr:`airoboros_ggml.formats.ModelFile.inferred`.
    """

    n_vocab: int
    """Vocabulary size (rows of the token embedding)."""
    n_embd: int
    """Model width."""
    n_layer: int
    """Number of transformer blocks."""
    n_head: int
    """Query heads."""
    n_head_kv: int
    """Key/value heads (grouped-query attention when smaller than ``n_head``)."""
    n_ff: int
    """Feed-forward hidden size."""
    n_rot: int
    """Rotary dimensions per head (the head size for Llama)."""
    n_ctx_train: int = 4096
    """Context length the model was trained with."""
    rms_norm_eps: float = 1e-5
    """Epsilon of RMSNorm."""
    rope_freq_base: float = 10000.0
    """RoPE frequency base."""
    rope_freq_scale: float = 1.0
    """RoPE position scale (linear scaling: positions are multiplied by this)."""
    ftype: FileType | int = FileType.ALL_F32
    """File-level "mostly" quantization type."""

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.n_embd // self.n_head

    @property
    def n_embd_kv(self) -> int:
        """Width of the key and value projections."""
        return self.head_dim * self.n_head_kv

    def replace(self, **changes: object) -> HParams:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)
