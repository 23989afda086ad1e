"""Quantize a model file as llama.cpp's ``quantize`` did in August 2023 (the recipes of TheBloke's files).

Each tensor's type follows :mod:`airoboros_ggml.quants.mix` (e.g. q4_K_M keeps half of ``attn_v`` and
``ffn_down`` and the output matrix in Q6_K); norms stay F32. A K-quant needs rows that are a multiple of 256;
other rows fall back to a legacy type of at least as many bits, as later llama.cpp does (Q2_K -> Q4_0,
Q3_K -> Q4_1, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). Input: F32/F16 files in either format; a quantized
input is dequantized and requantized, with a warning. The output is written tensor by tensor (never the
whole model in memory) under a temporary name, and its size is known before: :func:`plan_quantization`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import ConversionError
from ..formats import LazyTensor, ModelFile, TensorInfo, open_model_file
from ..ggml_types import LAYOUTS, QK_K, SEED_FILE_TYPES, FileType, GGMLType, ggml_type
from ..progress import progress_bar
from ..quants import dequantize, quantize
from ..quants.mix import tensor_type
from ..runtime.options import physical_cores
from .model_output import (
    TargetFormat,
    carried_metadata,
    check_ggml_v3_target,
    source_tensors,
    target_format,
    write_model,
)

log = logging.getLogger(__name__)

QUANT_FILE_TYPES: tuple[FileType, ...] = (*SEED_FILE_TYPES, FileType.MOSTLY_F16, FileType.ALL_F32)
"""What :func:`quantize_file` produces: the 14 seed types, plus f16 and f32."""

K_QUANT_FALLBACK: dict[GGMLType, GGMLType] = {
    GGMLType.Q2_K: GGMLType.Q4_0,
    GGMLType.Q3_K: GGMLType.Q4_1,
    GGMLType.Q4_K: GGMLType.Q5_0,
    GGMLType.Q5_K: GGMLType.Q5_1,
    GGMLType.Q6_K: GGMLType.Q8_0,
}
"""Legacy type used for a K-quant tensor whose rows are not a multiple of 256 (llama.cpp's choice)."""

CHUNK_ELEMENTS = 1 << 20
"""Weights quantized per work item: bounds the temporaries and paces the progress bar."""

_LAYER = re.compile(r"blk\.(\d+)\.")
_FLOAT_TYPES = (GGMLType.F32, GGMLType.F16)
_K_QUANTS = frozenset(K_QUANT_FALLBACK)


def parse_file_type(name: str | int | FileType) -> FileType:
    """``"q4_K_M"`` (any case), ``"f16"``, ``"f32"`` or a llama.cpp ftype id -> :class:`FileType`.

    Raises:
        ConversionError: not one of :data:`QUANT_FILE_TYPES`; the message lists them.
    """
    if isinstance(name, str) and not name.isdigit():
        found = [t for t in QUANT_FILE_TYPES if t.label.lower() == name.lower()]
    else:
        found = [t for t in QUANT_FILE_TYPES if int(t) == int(name)]
    if not found:
        raise ConversionError(
            f"unknown quantization type {name!r}; choose one of {' '.join(t.label for t in QUANT_FILE_TYPES)}"
        )
    return found[0]


@dataclasses.dataclass(frozen=True)
class TensorPlan:
    """What happens to one tensor."""

    name: str
    """GGUF tensor name."""
    shape: tuple[int, ...]
    """Numpy-order shape."""
    source_type: GGMLType
    """Type in the input file."""
    target_type: GGMLType
    """Type in the output file."""
    reason: str
    """``"recipe"``, ``"norm"``, ``"override"``, or why the recipe's type was replaced."""

    @property
    def nbytes(self) -> int:
        """Bytes of the output tensor."""
        n_rows = int(np.prod(self.shape[:-1], dtype=np.int64))
        return n_rows * LAYOUTS[self.target_type].row_bytes(self.shape[-1])

    @property
    def n_elements(self) -> int:
        """Number of weights."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def copied(self) -> bool:
        """Whether the bytes are copied unchanged (same type in and out)."""
        return self.source_type == self.target_type


@dataclasses.dataclass(frozen=True)
class QuantizePlan:
    """The per-tensor plan of a quantization and the size of the file it makes."""

    source: Path
    """Input file."""
    ftype: FileType
    """Target file type."""
    format: TargetFormat
    """Output container: ``"gguf"`` or ``"ggml"``."""
    tensors: tuple[TensorPlan, ...]
    """Every tensor of the output, in order."""
    size: int
    """Exact size of the output file in bytes."""

    @property
    def n_params(self) -> int:
        """Total number of weights."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        """Average bits per weight of the tensor data."""
        return 8.0 * sum(t.nbytes for t in self.tensors) / max(1, self.n_params)

    @property
    def type_counts(self) -> dict[str, int]:
        """Output type name -> number of tensors."""
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.target_type.name] = counts.get(t.target_type.name, 0) + 1
        return counts

    def render(self) -> str:
        """A table of the plan, one line per tensor, and the totals (what ``--dry-run`` prints)."""
        width = max(len(t.name) for t in self.tensors)
        lines = [f"{'tensor':<{width}}  {'shape':>14}  {'from':>5} -> {'to':<5} {'MB':>9}  note"]
        for t in self.tensors:
            shape = "x".join(str(d) for d in t.shape)
            note = "" if t.reason == "recipe" else t.reason
            lines.append(f"{t.name:<{width}}  {shape:>14}  {t.source_type.name:>5} -> {t.target_type.name:<5} "
                         f"{t.nbytes / 1e6:9.2f}  {note}".rstrip())
        types = ", ".join(f"{n} {name}" for name, n in sorted(self.type_counts.items()))
        lines.append(f"{self.ftype.label} ({self.format}): {len(self.tensors)} tensors ({types}), "
                     f"{self.bits_per_weight:.2f} bits per weight, file size {self.size} bytes "
                     f"({self.size / 1e6:.1f} MB)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``--json``)."""
        return {
            "source": str(self.source),
            "type": self.ftype.label,
            "format": self.format,
            "size": self.size,
            "bits_per_weight": round(self.bits_per_weight, 4),
            "tensors": [
                {"name": t.name, "shape": list(t.shape), "from": t.source_type.name, "to": t.target_type.name,
                 "bytes": t.nbytes, "reason": t.reason}
                for t in self.tensors
            ],
        }


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_file` did."""

    plan: QuantizePlan
    """The plan followed (its ``size`` is the file's size)."""
    path: Path | None
    """The file written; None for a dry run."""
    seconds: float
    """Wall time of the quantization."""


def choose_type(name: str, shape: tuple[int, ...], ftype: FileType, n_layer: int) -> tuple[GGMLType, str]:
    """The output type of tensor ``name`` (GGUF naming) in a file of ``ftype``, and why."""
    if len(shape) == 1:
        return GGMLType.F32, "norm"
    m = _LAYER.match(name)
    chosen = tensor_type(ftype, name, shape[-1], int(m.group(1)) if m else 0, n_layer)
    if chosen in K_QUANT_FALLBACK and shape[-1] % QK_K:
        fallback = K_QUANT_FALLBACK[chosen]
        return fallback, f"{chosen.name} -> {fallback.name}: rows of {shape[-1]} are not a multiple of {QK_K}"
    return chosen, "recipe"


def plan_quantization(
    src: str | os.PathLike | ModelFile,
    ftype: str | int | FileType,
    *,
    dst: str | os.PathLike | None = None,
    to: str | None = None,
    tensor_types: Mapping[str, str | int | GGMLType] | None = None,
) -> QuantizePlan:
    """Decide every tensor's output type and the output file's exact size, reading no tensor data.

    Args:
        src: Input model file (path or an open :class:`ModelFile`).
        ftype: Target file type (``"q4_K_M"``, ...; see :func:`parse_file_type`).
        dst: Output path; its suffix picks the format when ``to`` is not given (default: the input's).
        to: ``"gguf"`` or ``"ggml"``.
        tensor_types: Per-tensor overrides, GGUF name -> type (as llama.cpp's ``--tensor-type``).
    """
    if isinstance(src, ModelFile):
        return _plan(src, parse_file_type(ftype), dst, to, tensor_types)[0]
    with open_model_file(src) as model_file:
        return _plan(model_file, parse_file_type(ftype), dst, to, tensor_types)[0]


def _plan(
    model_file: ModelFile,
    ftype: FileType,
    dst: str | os.PathLike | None,
    to: str | None,
    overrides: Mapping[str, str | int | GGMLType] | None,
) -> tuple[QuantizePlan, dict[str, TensorInfo], dict[str, Any]]:
    fmt = target_format(dst or model_file.path, to, model_file.format)
    tensors = source_tensors(model_file)
    if fmt == "ggml":
        tensors = check_ggml_v3_target(model_file, model_file.hparams, tensors)
    try:
        overrides = {name: ggml_type(t) for name, t in (overrides or {}).items()}
    except ValueError as e:
        raise ConversionError(f"tensor type override: {e}") from None
    unknown = sorted(set(overrides) - set(tensors))
    if unknown:
        raise ConversionError(f"tensor type overrides name tensors the model does not have: {', '.join(unknown)}")
    plans = []
    for name, info in tensors.items():
        if name in overrides:
            target, reason = overrides[name], "override"
        else:
            target, reason = choose_type(name, info.shape, ftype, model_file.hparams.n_layer)
        try:
            LAYOUTS[target].row_bytes(info.shape[-1])
        except ValueError:
            raise ConversionError(
                f"{name}: rows of {info.shape[-1]} weights cannot be stored as {target.name}"
            ) from None
        plans.append(TensorPlan(name, info.shape, info.ggml_type, target, reason))
    hparams = model_file.hparams.replace(ftype=ftype)
    vocab = model_file.vocab
    metadata = carried_metadata(model_file, hparams, vocab) if fmt == "gguf" else {}
    placeholders = {p.name: LazyTensor(p.target_type, p.shape, _zeros(p.nbytes)) for p in plans}
    size = write_model(None, fmt, hparams, vocab, placeholders, metadata=metadata).size
    plan = QuantizePlan(model_file.path, ftype, fmt, tuple(plans), size)
    return plan, tensors, {"hparams": hparams, "vocab": vocab, "metadata": metadata}


def _zeros(nbytes: int) -> Callable[[], np.ndarray]:
    return lambda: np.zeros(nbytes, dtype=np.uint8)  # untouched pages: counting them costs nothing


def quantize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike | None,
    ftype: str | int | FileType,
    *,
    dry_run: bool = False,
    to: str | None = None,
    tensor_types: Mapping[str, str | int | GGMLType] | None = None,
    n_threads: int | None = None,
    progress: bool | None = None,
) -> QuantizeResult:
    """Quantize a model file with llama.cpp's August-2023 per-tensor recipe for ``ftype``.

    Args:
        src: Input model (F32/F16 ideally; a quantized input is requantized with a warning).
        dst: Output file (written under a temporary name, renamed when complete); may be None for a dry run.
        ftype: ``q2_K q3_K_S q3_K_M q3_K_L q4_0 q4_1 q4_K_S q4_K_M q5_0 q5_1 q5_K_S q5_K_M q6_K q8_0``,
            ``f16`` or ``f32`` (any case), or a llama.cpp ftype id.
        dry_run: Only plan: nothing is read beyond the headers and nothing is written.
        to: Output format ``"gguf"``/``"ggml"`` (default: from ``dst``'s suffix, else the input's).
        tensor_types: Per-tensor type overrides (GGUF name -> type).
        n_threads: Threads (default: physical cores).
        progress: Draw a progress bar (default: on a terminal unless logging is quieter than INFO).

    Returns:
        The plan and, unless ``dry_run``, the file written (its size equals ``plan.size``).

    Raises:
        ModelFormatError: ``src`` is not a supported model file.
        ConversionError: an unknown type, or a tensor the type cannot hold.
        OutputFileError: ``dst`` cannot be written (nothing is left behind, also on Ctrl-C).
    """
    start = time.perf_counter()
    with open_model_file(src) as model_file:
        plan, tensors, parts = _plan(model_file, parse_file_type(ftype), dst, to, tensor_types)
        if dry_run:
            return QuantizeResult(plan, None, time.perf_counter() - start)
        if dst is None:
            raise ValueError("quantize_file needs an output path unless dry_run=True")
        requantized = [p.name for p in plan.tensors
                       if not p.copied and p.source_type not in _FLOAT_TYPES and p.target_type not in _FLOAT_TYPES]
        if requantized:
            log.warning("%s: requantizing %d already-quantized tensors (%s, ...): quality is lower than "
                        "quantizing from the f16/f32 original", model_file.path.name, len(requantized),
                        requantized[0])
        n_threads = max(1, n_threads or physical_cores())
        total = sum(p.n_elements for p in plan.tensors)
        with (progress_bar(total, f"quantize {plan.ftype.label}", progress=progress, unit="w",
                           unit_scale=True) as bar,
              concurrent.futures.ThreadPoolExecutor(n_threads) as pool):
            lazy = {p.name: LazyTensor(p.target_type, p.shape, _producer(p, tensors[p.name], pool, bar))
                    for p in plan.tensors}
            written = write_model(dst, plan.format, parts["hparams"], parts["vocab"], lazy,
                                  metadata=parts["metadata"])
    if written.size != plan.size:  # the plan is computed by the same writer; a mismatch is a bug
        raise AssertionError(f"wrote {written.size} bytes, planned {plan.size}")
    seconds = time.perf_counter() - start
    log.info("wrote %s: %s, %.1f MB, %.2f bpw, in %.1f s", dst, plan.ftype.label, written.size / 1e6,
             plan.bits_per_weight, seconds)
    return QuantizeResult(plan, written.path, seconds)


def _producer(plan: TensorPlan, info: TensorInfo, pool: concurrent.futures.Executor,
              bar: tqdm) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        if plan.copied:
            bar.update(plan.n_elements)
            return info.data  # uint8 (nbytes,): unchanged
        return quantize_rows(info.data, plan.source_type, plan.target_type, plan.shape, pool, bar.update)

    return produce


def quantize_rows(
    raw: np.ndarray,
    source: GGMLType,
    target: GGMLType,
    shape: tuple[int, ...],
    pool: concurrent.futures.Executor | None = None,
    done: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Convert a tensor's bytes from ``source`` to ``target`` type, chunk by chunk of rows.

    The dequantizers and the K-quant quantizer are numba kernels parallel over rows by themselves and run
    here; the legacy quantizers (numpy, which releases the GIL) run on ``pool``'s threads, a few chunks
    in flight at a time.

    Args:
        raw: The tensor's bytes.
        source: Their type.
        target: The type to produce.
        shape: Numpy-order shape (rows last-but-one).
        pool: Threads for the legacy quantizers (None: one at a time).
        done: Called with the number of weights of each finished chunk.

    Returns:
        uint8 (n_rows, target row bytes).
    """
    n_in = shape[-1]
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    rows_in = raw.reshape(n_rows, LAYOUTS[source].row_bytes(n_in))  # uint8 (n_rows, source row bytes)
    out = np.empty((n_rows, LAYOUTS[target].row_bytes(n_in)), dtype=np.uint8)  # uint8 (n_rows, target row bytes)
    step = max(1, CHUNK_ELEMENTS // n_in)
    in_flight: collections.deque[concurrent.futures.Future] = collections.deque()
    limit = 2 * getattr(pool, "_max_workers", 1)

    def finish(r0: int, r1: int, values: np.ndarray) -> None:
        out[r0:r1] = quantize(values, target)
        if done is not None:
            done(values.size)

    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        values = dequantize(rows_in[r0:r1], source, (r1 - r0, n_in))  # float32 (rows, n_in)
        if pool is None or target in _K_QUANTS:
            finish(r0, r1, values)
            continue
        in_flight.append(pool.submit(finish, r0, r1, values))
        while len(in_flight) >= limit:
            in_flight.popleft().result()
    for future in in_flight:
        future.result()
    return out
