"""Writing a whole model file as GGUF or GGML v3: what each target can hold, and the write itself.

Shared by :mod:`.convert` and :mod:`.quantize`: both read a model, decide each tensor's bytes (copied or
quantized, produced lazily while the file is written) and hand the lot to :func:`write_model`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from ..errors import ConversionError
from ..formats import ModelFile, TensorInfo, ggml_to_gguf, write_ggml, write_gguf
from ..formats.gguf import ValueType
from ..formats.tensors import expected_llama_shapes
from ..formats.writer import TensorValue, gguf_metadata
from ..generation.templates import get_template
from ..hparams import HParams
from ..vocab import Vocab
from .output import CountingSink, atomic_output

log = logging.getLogger(__name__)

TargetFormat = Literal["gguf", "ggml"]

GGML_V3_DEFAULTS = {"n_ctx_train": 4096, "rms_norm_eps": 1e-5, "rope_freq_base": 10000.0, "rope_freq_scale": 1.0}
"""What a GGML v3 file implies for the hyperparameters it cannot store (the loader assumes these)."""
_LOAD_FLAGS = {"n_ctx_train": "-c/n_ctx", "rms_norm_eps": "--rms-norm-eps", "rope_freq_base": "--rope-freq-base",
               "rope_freq_scale": "--rope-freq-scale"}

_OWNED_PREFIXES = ("tokenizer.ggml.", "llama.rope.scaling.")
_OWNED_KEYS = {"general.alignment", "general.file_type", "general.quantization_version", "llama.rope.scale_linear",
               "tokenizer.chat_template"}


def target_format(dst: str | os.PathLike, requested: str | None, source_format: str) -> TargetFormat:
    """The format to write: ``requested``, else from ``dst``'s suffix (``.gguf`` / ``.bin``), else the source's."""
    if requested is not None:
        if requested not in ("gguf", "ggml"):
            raise ConversionError(f"unknown output format {requested!r}; use 'gguf' or 'ggml'")
        return requested  # type: ignore[return-value]
    suffix = Path(dst).suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".bin":
        return "ggml"
    return "gguf" if source_format.startswith("gguf") else "ggml"


def source_tensors(model_file: ModelFile) -> dict[str, TensorInfo]:
    """The file's tensors keyed by GGUF name, in file order."""
    if model_file.format.startswith("gguf"):
        return dict(model_file.tensors)
    return {ggml_to_gguf(name): info for name, info in model_file.tensors.items()}


def carried_metadata(model_file: ModelFile, hparams: HParams, vocab: Vocab) -> dict[str, Any]:
    """GGUF keys of the source worth keeping (``general.name``, license, ...) that the writer does not derive.

    The reader returns plain Python values, so types are restored by convention: non-negative integers as
    UINT32 (the type of every such key llama.cpp defines), floats as FLOAT32, string lists as string arrays.
    """
    derived = gguf_metadata(hparams, vocab).keys()
    out: dict[str, Any] = {}
    for key, value in model_file.metadata.items():
        if key in derived or key in _OWNED_KEYS or key.startswith(_OWNED_PREFIXES):
            continue
        typed = _typed_value(value)
        if typed is None:
            log.warning("%s: metadata %s is not carried over (unsupported value)", model_file.path, key)
        else:
            out[key] = typed
    return out


def _typed_value(value: Any) -> Any:
    if isinstance(value, (bool, str, float, np.ndarray)):
        return value
    if isinstance(value, int):
        return (ValueType.UINT32, value) if 0 <= value < 1 << 32 else (ValueType.INT64, value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return (ValueType.STRING, value)
    return None


def check_ggml_v3_target(model_file: ModelFile, hparams: HParams, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse what GGML v3 cannot hold; warn about what it loses. Returns the tensors to write.

    Raises:
        ConversionError: a byte-level BPE vocabulary, or special tokens other than Llama's 0/1/2.
    """
    path, vocab = model_file.path, model_file.vocab
    if vocab.model != "llama":
        raise ConversionError(
            f"{path}: its vocabulary is byte-level BPE ({vocab.model!r}); GGML v3 files hold SentencePiece "
            "vocabularies only, so this model cannot be converted to GGML v3 (keep it as GGUF)"
        )
    special = {"unk": (vocab.unk_id, 0), "bos": (vocab.bos_id, 1), "eos": (vocab.eos_id, 2)}
    moved = [f"{k} = {have}" for k, (have, want) in special.items() if have != want]
    if moved:
        raise ConversionError(
            f"{path}: GGML v3 assumes unk/bos/eos token ids 0/1/2, but this vocabulary has {', '.join(moved)}; "
            "it cannot be converted to GGML v3 (keep it as GGUF)"
        )
    for field, default in GGML_V3_DEFAULTS.items():
        value = getattr(hparams, field)
        if value != default:
            log.warning("GGML v3 cannot store %s = %s (a loader assumes %s): load the converted file with %s %s",
                        field, value, default, _LOAD_FLAGS[field], value)
    if not (vocab.add_bos and vocab.add_space_prefix and not vocab.add_eos):
        log.warning("GGML v3 cannot store the tokenizer flags add_bos=%s add_eos=%s add_space_prefix=%s; "
                    "a loader assumes True/False/True", vocab.add_bos, vocab.add_eos, vocab.add_space_prefix)
    if vocab.chat_template is not None and get_template("auto", chat_template=vocab.chat_template).name != "airoboros":
        log.warning("GGML v3 cannot store the chat template; loaders format prompts as Airoboros by default")
    out = dict(tensors)
    if "output.weight" not in out:  # tied embeddings: GGML v3 loaders need the output matrix itself
        out["output.weight"] = out["token_embd.weight"]
        log.info("the model ties its output to the token embedding: output.weight is written as a copy of it")
    known = expected_llama_shapes(hparams)
    extra = [name for name in out if name not in known]
    for name in extra:
        log.warning("GGML v3 has no room for tensor %s: left out", name)
        del out[name]
    return out


def find_n_mult(n_ff: int, n_embd: int) -> int:
    """The largest ``n_mult`` whose rounding of ``8 * n_embd / 3`` gives ``n_ff`` (the 2023 converter's rule).

    Llama-2 7B gives 5504 and 13B 6912, as in TheBloke's files; 256 when no value fits (70B's 28672).
    """
    for n_mult in range(8192, 1, -1):
        if ((8 * n_embd) // 3 + n_mult - 1) // n_mult * n_mult == n_ff:
            return n_mult
    return 256


@dataclasses.dataclass(frozen=True)
class WrittenModel:
    """What :func:`write_model` produced."""

    path: Path | None
    """The file written (None for a size-only dry run)."""
    format: TargetFormat
    """``"gguf"`` or ``"ggml"``."""
    size: int
    """File size in bytes."""


def write_model(
    dst: str | os.PathLike | None,
    fmt: TargetFormat,
    hparams: HParams,
    vocab: Vocab,
    tensors: Mapping[str, TensorValue],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> WrittenModel:
    """Write a model file atomically (``dst``), or only measure it (``dst=None``: nothing is produced).

    Raises:
        OutputFileError: the file cannot be written; nothing is left behind.
    """
    if dst is None:
        sink = CountingSink()
        _write(sink, fmt, hparams, vocab, tensors, metadata)
        return WrittenModel(None, fmt, sink.size)
    with atomic_output(dst) as tmp:
        _write(tmp, fmt, hparams, vocab, tensors, metadata)
        size = tmp.stat().st_size
    return WrittenModel(Path(dst), fmt, size)


def _write(out: Path | BinaryIO, fmt: TargetFormat, hparams: HParams, vocab: Vocab,
           tensors: Mapping[str, TensorValue], metadata: Mapping[str, Any] | None) -> None:
    if fmt == "gguf":
        write_gguf(out, hparams, vocab, tensors, metadata=metadata)
    else:
        write_ggml(out, hparams, vocab, tensors, n_mult=find_n_mult(hparams.n_ff, hparams.n_embd))

