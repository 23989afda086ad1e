"""Which ggml type each tensor gets for a file type, as llama.cpp's quantizer chose in August 2023.

The "_S/_M/_L" K-quant files mix types: e.g. q4_K_M keeps half of ``attn_v`` and ``ffn_down`` in Q6_K
and the output matrix in Q6_K. Reproducing the choice lets tests and benchmarks build files shaped like
TheBloke's (a 7B q4_K_M comes out at 4,080,714,368 bytes as GGML v3).
"""

from __future__ import annotations

from ..ggml_types import QK_K, FileType, GGMLType

_BASE: dict[FileType, GGMLType] = {
    FileType.ALL_F32: GGMLType.F32,
    FileType.MOSTLY_F16: GGMLType.F16,
    FileType.MOSTLY_Q4_0: GGMLType.Q4_0,
    FileType.MOSTLY_Q4_1: GGMLType.Q4_1,
    FileType.MOSTLY_Q5_0: GGMLType.Q5_0,
    FileType.MOSTLY_Q5_1: GGMLType.Q5_1,
    FileType.MOSTLY_Q8_0: GGMLType.Q8_0,
    FileType.MOSTLY_Q2_K: GGMLType.Q2_K,
    FileType.MOSTLY_Q3_K_S: GGMLType.Q3_K,
    FileType.MOSTLY_Q3_K_M: GGMLType.Q3_K,
    FileType.MOSTLY_Q3_K_L: GGMLType.Q3_K,
    FileType.MOSTLY_Q4_K_S: GGMLType.Q4_K,
    FileType.MOSTLY_Q4_K_M: GGMLType.Q4_K,
    FileType.MOSTLY_Q5_K_S: GGMLType.Q5_K,
    FileType.MOSTLY_Q5_K_M: GGMLType.Q5_K,
    FileType.MOSTLY_Q6_K: GGMLType.Q6_K,
}


def base_type(ftype: FileType) -> GGMLType:
    """The "mostly" type of a file type."""
    return _BASE[FileType(ftype)]


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(ftype: FileType, name: str, row_length: int, layer: int, n_layer: int) -> GGMLType:
    """The type llama.cpp gave tensor ``name`` (GGUF naming) of ``layer`` in a file of ``ftype``.

    Norm vectors are always F32. K-quant choices need rows that are a multiple of 256; other rows fall back
    to the base type (and raise later if that is a K-quant).
    """
    ftype = FileType(ftype)
    base = base_type(ftype)
    if name.endswith("norm.weight"):
        return GGMLType.F32
    if base in (GGMLType.F32, GGMLType.F16):
        return base
    F = FileType
    if name == "output.weight":
        return GGMLType.Q6_K if row_length % QK_K == 0 else base
    if name.endswith("attn_v.weight") or name.endswith("ffn_down.weight"):
        if ftype == F.MOSTLY_Q2_K:
            return GGMLType.Q4_K
        if ftype == F.MOSTLY_Q3_K_M:
            return GGMLType.Q5_K if layer < 2 else GGMLType.Q4_K
        if ftype == F.MOSTLY_Q3_K_L:
            return GGMLType.Q5_K
        if ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and _use_more_bits(layer, n_layer):
            return GGMLType.Q6_K
    if name.endswith("attn_output.weight"):
        if ftype == F.MOSTLY_Q3_K_M:
            return GGMLType.Q4_K
        if ftype == F.MOSTLY_Q3_K_L:
            return GGMLType.Q5_K
    return base
