"""Registry of ggml tensor types: block size, bytes per block, and size checks.

Block layouts are documented above each type's kernels in :mod:`.reference` (numpy statement),
:mod:`.kernels` (numba) and the quantizers in :mod:`.legacy` / :mod:`.kquants`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ggml_types import BLOCK_SIZES, GGMLType, ggml_type


@dataclass(frozen=True)
class TypeTraits:
    """Static facts about one ggml type."""

    ggml_type: GGMLType
    """The type enum member."""
    block_size: int
    """Elements per block."""
    type_size: int
    """Bytes per block."""
    is_weight: bool
    """Whether model files may store weights in this type (False for Q8_1/Q8_K activations)."""

    @property
    def bits_per_weight(self) -> float:
        """Effective bits per element, scales included."""
        return self.type_size * 8 / self.block_size

    def row_bytes(self, n: int) -> int:
        """Bytes of a row of ``n`` elements; raises ValueError unless ``n`` is a multiple of the block."""
        if n <= 0 or n % self.block_size:
            raise ValueError(
                f"{self.ggml_type.name} rows must hold a positive multiple of {self.block_size} "
                f"elements, got {n}"
            )
        return n // self.block_size * self.type_size


TYPE_TRAITS: dict[GGMLType, TypeTraits] = {
    t: TypeTraits(t, bs, ts, t not in (GGMLType.Q8_1, GGMLType.Q8_K)) for t, (bs, ts) in BLOCK_SIZES.items()
}
"""Traits of every ggml type this package knows, keyed by :class:`GGMLType`."""


def traits(t: GGMLType | int | str) -> TypeTraits:
    """Return the :class:`TypeTraits` of a type given as enum, integer id or name."""
    return TYPE_TRAITS[ggml_type(t)]


def as_uint8(raw: np.ndarray) -> np.ndarray:
    """Return a contiguous uint8 view of ``raw`` (no copy when already contiguous)."""
    raw = np.asarray(raw)
    if not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw)
    return raw.view(np.uint8) if raw.dtype != np.uint8 else raw
