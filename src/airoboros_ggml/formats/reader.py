"""``open_model_file``: recognise any GGML-family or GGUF file and parse the supported ones."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from ..vocab import Vocab
from .ggjt import GGJT_MAGIC, GGMF_MAGIC, GGML_MAGIC, legacy_format_error, read_ggjt, read_ggjt_vocab
from .gguf import GGUF_MAGIC, read_gguf, read_gguf_vocab
from .model_file import ModelFile


def open_model_file(
    path: str | os.PathLike,
    *,
    n_ctx_train: int | None = None,
    rms_norm_eps: float | None = None,
    rope_freq_base: float | None = None,
    rope_freq_scale: float | None = None,
) -> ModelFile:
    """Memory-map and parse a GGJT v3 (``.ggmlv3.*.bin``) or GGUF v2/v3 Llama model file.

    Tensor data is not read: each :class:`TensorInfo` holds a read-only view into the map.

    Args:
        path: The model file.
        n_ctx_train: Override the training context length (GGML v3 files do not store it; default 4096).
        rms_norm_eps: Override the RMS-norm epsilon (GGML v3 default 1e-5).
        rope_freq_base: Override the RoPE frequency base (default 10000 or the GGUF value).
        rope_freq_scale: Override the RoPE position scale (default 1.0 or the GGUF value).

    Raises:
        ModelFormatError: the file is not a supported model file, or is damaged. The message says what
            the file is and what to do.
    """
    overrides = {
        "n_ctx_train": n_ctx_train,
        "rms_norm_eps": rms_norm_eps,
        "rope_freq_base": rope_freq_base,
        "rope_freq_scale": rope_freq_scale,
    }
    path, mm = _map(path)
    try:
        model_file = _parse(path, mm, read_gguf, read_ggjt, overrides)
        if model_file.vocab.n_vocab != model_file.hparams.n_vocab:
            raise ModelFormatError(
                f"{path}: the vocabulary has {model_file.vocab.n_vocab} tokens but the model expects "
                f"{model_file.hparams.n_vocab}"
            )
    except BaseException:
        _close(mm)
        raise
    model_file.mmap = mm
    return model_file


def read_vocab(path: str | os.PathLike) -> Vocab:
    """Read only the vocabulary of a GGJT v3 or GGUF v2/v3 file, of any architecture.

    Works on vocabulary-only GGUF files (no tensors) such as llama.cpp's ``ggml-vocab-*.gguf``.

    Raises:
        ModelFormatError: not a supported file, or damaged.
    """
    path, mm = _map(path)
    try:
        return _parse(path, mm, read_gguf_vocab, read_ggjt_vocab)
    finally:
        _close(mm)


def _map(path: str | os.PathLike) -> tuple[Path, mmap.mmap]:
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFormatError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size < 8:
        raise ModelFormatError(f"{path}: file is only {size} bytes, too short to be a model file")
    with open(path, "rb") as f:
        return path, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # views into the map still exist; it is released when they are
        pass


def _parse(path: Path, mm: mmap.mmap, gguf_reader: Callable, ggjt_reader: Callable, *args: Any) -> Any:
    buf = memoryview(mm)
    try:
        head = bytes(buf[:8])
        (magic,) = struct.unpack_from("<I", head)
        if head[:4] == GGUF_MAGIC:
            return gguf_reader(path, buf, *args)
        if magic == GGJT_MAGIC:
            return ggjt_reader(path, buf, *args)
        if magic in (GGMF_MAGIC, GGML_MAGIC):
            version = struct.unpack_from("<I", head, 4)[0] if magic == GGMF_MAGIC else None
            raise legacy_format_error(path, magic, version)
        raise ModelFormatError(
            f"{path}: not a model file (first bytes {head[:4]!r}); expected a GGUF file or a GGML v3 "
            "(.ggmlv3.*.bin) Llama model"
        )
    except ModelFormatError:
        raise
    except (ValueError, OverflowError, MemoryError, UnicodeError, struct.error, IndexError) as e:
        raise ModelFormatError(f"{path}: the file is damaged or not a supported model file ({e})") from e
