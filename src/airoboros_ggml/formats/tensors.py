"""Turning tensor headers into checked, zero-copy :class:`TensorInfo` views, and checking the Llama set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError
from ..ggml_types import LAYOUTS, WEIGHT_TYPES, GGMLType
from ..hparams import HParams
from .model_file import TensorInfo
from .tensor_names import LAYER_TENSORS, layer_name

MAX_DIMS = 4
MAX_ELEMENTS = 1 << 40


@dataclasses.dataclass(frozen=True)
class TensorHeader:
    """A tensor as described by a file header, before its data is checked."""

    name: str
    type_id: int
    ne: tuple[int, ...]  # ggml order: ne0 (row length) first
    offset: int  # absolute file offset of the data


def check_header(h: TensorHeader, path: Path) -> tuple[GGMLType, int]:
    """Validate a tensor header; return its type and data size in bytes."""
    where = f"{path}: tensor {h.name!r}"
    try:
        t = GGMLType(h.type_id)
    except ValueError:
        raise ModelFormatError(
            f"{where} has unknown ggml type id {h.type_id}; this file needs a newer tool "
            "(supported: " + ", ".join(x.name for x in sorted(WEIGHT_TYPES)) + ")"
        ) from None
    if t not in WEIGHT_TYPES:
        raise ModelFormatError(f"{where} has type {t.name}, which is an activation-only format")
    if not 1 <= len(h.ne) <= MAX_DIMS or any(d <= 0 for d in h.ne):
        raise ModelFormatError(f"{where} has invalid dimensions {list(h.ne)}")
    n = 1
    for d in h.ne:
        n *= d
    if n > MAX_ELEMENTS:
        raise ModelFormatError(f"{where} claims an absurd size of {n} elements")
    block, size = LAYOUTS[t].block_size, LAYOUTS[t].type_size
    if h.ne[0] % block:
        raise ModelFormatError(f"{where}: row length {h.ne[0]} is not a multiple of {t.name}'s block of {block}")
    return t, n // block * size


def build_tensors(headers: list[TensorHeader], buf: memoryview, path: Path) -> dict[str, TensorInfo]:
    """Check every tensor's extent against the file, reject overlaps and duplicates, return views."""
    file_size = len(buf)
    out: dict[str, TensorInfo] = {}
    extents: list[tuple[int, int, str]] = []
    for h in headers:
        if h.name in out:
            raise ModelFormatError(f"{path}: tensor {h.name!r} appears twice")
        t, nbytes = check_header(h, path)
        end = h.offset + nbytes
        if h.offset < 0 or end > file_size:
            raise ModelFormatError(
                f"{path}: tensor {h.name!r} needs bytes {h.offset}..{end} but the file is only {file_size} "
                f"bytes: the file is truncated (expected at least {end} bytes); re-download it"
            )
        extents.append((h.offset, end, h.name))
        data = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=h.offset)
        out[h.name] = TensorInfo(h.name, t, tuple(reversed(h.ne)), h.offset, data)
    extents.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(extents, extents[1:]):
        if start_b < end_a:
            raise ModelFormatError(f"{path}: tensors {name_a!r} and {name_b!r} overlap; the file is corrupt")
    return out


def check_hparams(hp: HParams, path: Path) -> None:
    """Reject hyperparameters that cannot describe a Llama model."""
    positive = ("n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "n_rot", "n_ctx_train")
    for field in positive:
        value = getattr(hp, field)
        if not 0 < value < (1 << 31):
            raise ModelFormatError(f"{path}: hyperparameter {field} = {value} is invalid")
    if hp.n_ff < 0 or hp.n_ff >= (1 << 31):
        raise ModelFormatError(f"{path}: hyperparameter n_ff = {hp.n_ff} is invalid")
    if hp.n_embd % hp.n_head:
        raise ModelFormatError(f"{path}: n_embd {hp.n_embd} is not divisible by n_head {hp.n_head}")
    if hp.n_head % hp.n_head_kv:
        raise ModelFormatError(f"{path}: n_head {hp.n_head} is not divisible by n_head_kv {hp.n_head_kv}")
    for field in ("rms_norm_eps", "rope_freq_base", "rope_freq_scale"):
        value = getattr(hp, field)
        if not (np.isfinite(value) and value > 0):
            raise ModelFormatError(f"{path}: {field} = {value} is invalid (must be a positive number)")


def expected_llama_shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    """Numpy-order shape of every Llama tensor (GGUF names); ``output.weight`` may be absent (tied)."""
    e, kv, ff = hp.n_embd, hp.n_embd_kv, hp.n_ff
    per_layer = {
        "attn_norm.weight": (e,),
        "attn_q.weight": (e, e),
        "attn_k.weight": (kv, e),
        "attn_v.weight": (kv, e),
        "attn_output.weight": (e, e),
        "ffn_norm.weight": (e,),
        "ffn_gate.weight": (ff, e),
        "ffn_down.weight": (e, ff),
        "ffn_up.weight": (ff, e),
    }
    assert set(per_layer) == set(LAYER_TENSORS)
    shapes = {
        "token_embd.weight": (hp.n_vocab, e),
        "output_norm.weight": (e,),
        "output.weight": (hp.n_vocab, e),
    }
    for i in range(hp.n_layer):
        for suffix, shape in per_layer.items():
            shapes[layer_name(i, suffix)] = shape
    return shapes


def check_llama_tensors(tensors: dict[str, TensorInfo], hp: HParams, path: Path, to_file_name) -> None:
    """Check that a file with tensors holds the complete Llama set with the right shapes.

    A file with no tensors at all is a vocabulary-only file and passes.
    """
    if not tensors:
        return
    for name, shape in expected_llama_shapes(hp).items():
        file_name = to_file_name(name)
        info = tensors.get(file_name)
        if info is None:
            if name == "output.weight":
                continue  # tied embeddings
            raise ModelFormatError(f"{path}: tensor {file_name!r} is missing; the file is incomplete or not Llama")
        if info.shape != shape:
            raise ModelFormatError(
                f"{path}: tensor {file_name!r} has shape {list(info.shape)}, expected {list(shape)} "
                "from the hyperparameters"
            )
        if len(shape) == 1 and info.ggml_type not in (GGMLType.F32, GGMLType.F16):
            raise ModelFormatError(f"{path}: norm tensor {file_name!r} must be F32 or F16, not {info.ggml_type.name}")
