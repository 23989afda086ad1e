"""The ggml tensor type enum and file-type ("ftype") enum, shared by GGML v3 and GGUF.

Ids are those of ggml (identical in GGJT v3 and GGUF files). This module sits below every other one (it
imports nothing from the package): the file readers take block and byte sizes from :data:`LAYOUTS`, and
:mod:`airoboros_ggml.quants` extends each layout with its kernels into the traits table ``TYPE_TRAITS``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class GGMLType(enum.IntEnum):
    """A ggml tensor element type (same integer ids as GGUF)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15


QK_K = 256
"""Elements per super-block of the K-quants."""


@dataclass(frozen=True)
class BlockLayout:
    """How one ggml type packs elements into bytes: the facts file readers and every kernel share.

    The full per-type table, with the kernels, is :data:`airoboros_ggml.quants.TYPE_TRAITS`; this part holds
    no kernels so that the file readers can check tensor extents without importing numba code.
    """

    ggml_type: GGMLType
    """The type enum member."""
    block_size: int
    """Elements per block."""
    type_size: int
    """Bytes per block."""
    is_weight: bool
    """Whether model files may store weights in this type (False for the activation-only Q8_1/Q8_K)."""
    f16_offsets: tuple[int, ...]
    """Byte offsets of the fp16 scale fields (``d``, ``dmin``/``m``) within a block; byte layouts of every
    block are described in :mod:`airoboros_ggml.quants.kernels`."""

    @property
    def bits_per_weight(self) -> float:
        """Effective bits per element, scales included."""
        return self.type_size * 8 / self.block_size

    def row_bytes(self, n: int) -> int:
        """Bytes of a row of ``n`` elements; raises ValueError unless ``n`` is a positive multiple of the block."""
        if n <= 0 or n % self.block_size:
            raise ValueError(
                f"{self.ggml_type.name} rows must hold a positive multiple of {self.block_size} "
                f"elements, got {n}"
            )
        return n // self.block_size * self.type_size


def _layout(t: GGMLType, block_size: int, type_size: int, f16_offsets: tuple[int, ...] = ()) -> BlockLayout:
    return BlockLayout(t, block_size, type_size, t not in (GGMLType.Q8_1, GGMLType.Q8_K), f16_offsets)


LAYOUTS: dict[GGMLType, BlockLayout] = {
    lay.ggml_type: lay
    for lay in (
        _layout(GGMLType.F32, 1, 4),
        _layout(GGMLType.F16, 1, 2),
        _layout(GGMLType.Q4_0, 32, 18, (0,)),
        _layout(GGMLType.Q4_1, 32, 20, (0, 2)),
        _layout(GGMLType.Q5_0, 32, 22, (0,)),
        _layout(GGMLType.Q5_1, 32, 24, (0, 2)),
        _layout(GGMLType.Q8_0, 32, 34, (0,)),
        _layout(GGMLType.Q8_1, 32, 36, (0, 2)),
        _layout(GGMLType.Q2_K, QK_K, 84, (80, 82)),
        _layout(GGMLType.Q3_K, QK_K, 110, (108,)),
        _layout(GGMLType.Q4_K, QK_K, 144, (0, 2)),
        _layout(GGMLType.Q5_K, QK_K, 176, (0, 2)),
        _layout(GGMLType.Q6_K, QK_K, 210, (208,)),
        _layout(GGMLType.Q8_K, QK_K, 292),
    )
}
"""Block layout of every ggml type this package knows, keyed by :class:`GGMLType`."""

WEIGHT_TYPES: frozenset[GGMLType] = frozenset(t for t, lay in LAYOUTS.items() if lay.is_weight)
"""Types a model file may store weights in (Q8_1 and Q8_K are activation-only formats)."""


def ggml_type(value: GGMLType | int | str) -> GGMLType:
    """Return the :class:`GGMLType` for an enum member, integer id or name such as ``"Q4_K"``.

    Raises:
        ValueError: the value names no known type.
    """
    if isinstance(value, GGMLType):
        return value
    if isinstance(value, str):
        try:
            return GGMLType[value.upper()]
        except KeyError:
            raise ValueError(f"unknown ggml type name {value!r}") from None
    try:
        return GGMLType(int(value))
    except ValueError:
        raise ValueError(f"unknown ggml type id {value!r}") from None


class FileType(enum.IntEnum):
    """The file-level "mostly" type stored in GGML v3 hparams and GGUF ``general.file_type``."""

    ALL_F32 = 0
    MOSTLY_F16 = 1
    MOSTLY_Q4_0 = 2
    MOSTLY_Q4_1 = 3
    MOSTLY_Q4_1_SOME_F16 = 4
    MOSTLY_Q8_0 = 7
    MOSTLY_Q5_0 = 8
    MOSTLY_Q5_1 = 9
    MOSTLY_Q2_K = 10
    MOSTLY_Q3_K_S = 11
    MOSTLY_Q3_K_M = 12
    MOSTLY_Q3_K_L = 13
    MOSTLY_Q4_K_S = 14
    MOSTLY_Q4_K_M = 15
    MOSTLY_Q5_K_S = 16
    MOSTLY_Q5_K_M = 17
    MOSTLY_Q6_K = 18

    @property
    def label(self) -> str:
        """Short name as in file names: ``q4_K_M``, ``f16``..."""
        name = self.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        return name[0].lower() + name[1:]


SEED_FILE_TYPES: tuple[FileType, ...] = (
    FileType.MOSTLY_Q2_K,
    FileType.MOSTLY_Q3_K_S,
    FileType.MOSTLY_Q3_K_M,
    FileType.MOSTLY_Q3_K_L,
    FileType.MOSTLY_Q4_0,
    FileType.MOSTLY_Q4_1,
    FileType.MOSTLY_Q4_K_S,
    FileType.MOSTLY_Q4_K_M,
    FileType.MOSTLY_Q5_0,
    FileType.MOSTLY_Q5_1,
    FileType.MOSTLY_Q5_K_S,
    FileType.MOSTLY_Q5_K_M,
    FileType.MOSTLY_Q6_K,
    FileType.MOSTLY_Q8_0,
)
"""The 14 quantizations TheBloke published for airoboros-l2-7b-gpt4-1.4.1 (GGML v3)."""
