"""The ggml tensor type enum and file-type ("ftype") enum, shared by GGML v3 and GGUF.

Ids are those of ggml (identical in GGJT v3 and GGUF files). The per-type block layouts live with their
kernels in :mod:`airoboros_ggml.quants`; this module only holds the table of block and byte sizes that the
file readers need to check tensor extents.
"""

from __future__ import annotations

import enum


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

# type -> (elements per block, bytes per block)
BLOCK_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q4_0: (32, 18),
    GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22),
    GGMLType.Q5_1: (32, 24),
    GGMLType.Q8_0: (32, 34),
    GGMLType.Q8_1: (32, 36),
    GGMLType.Q2_K: (QK_K, 84),
    GGMLType.Q3_K: (QK_K, 110),
    GGMLType.Q4_K: (QK_K, 144),
    GGMLType.Q5_K: (QK_K, 176),
    GGMLType.Q6_K: (QK_K, 210),
    GGMLType.Q8_K: (QK_K, 292),
}

WEIGHT_TYPES: frozenset[GGMLType] = frozenset(BLOCK_SIZES) - {GGMLType.Q8_1, GGMLType.Q8_K}
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


def row_nbytes(ggml_type_: GGMLType, n_elements: int) -> int:
    """Bytes taken by ``n_elements`` consecutive elements (must be a whole number of blocks)."""
    block, size = BLOCK_SIZES[ggml_type_]
    if n_elements % block:
        raise ValueError(f"{ggml_type_.name} needs a multiple of {block} elements, got {n_elements}")
    return n_elements // block * size


def bits_per_weight(ggml_type_: GGMLType) -> float:
    """Effective bits per weight of a type, scales included."""
    block, size = BLOCK_SIZES[ggml_type_]
    return size * 8 / block


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
