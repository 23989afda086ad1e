"""Writers for GGJT v3 and GGUF v2/v3 Llama files (for tests, benchmarks, convert and quantize).

Tensor names are given in the GGUF convention (``blk.0.attn_q.weight``); the GGML v3 writer renames them
to the original names (``layers.0.attention.wq.weight``). Shapes are numpy order (rows first). Tensor values
are :class:`RawTensor`, float arrays, or :class:`LazyTensor` (data produced only when it is written, so a
quantizer can run one tensor at a time while the file is written). The output is a path or a binary stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..ggml_types import LAYOUTS, GGMLType
from ..hparams import HParams
from ..vocab import Vocab, to_piece_encoding
from .ggjt import GGJT_ALIGNMENT, GGJT_MAGIC
from .gguf import DEFAULT_ALIGNMENT, GGUF_MAGIC, ValueType
from .tensor_names import gguf_to_ggml


@dataclasses.dataclass(frozen=True)
class RawTensor:
    """A tensor to write: its type, numpy-order shape, and data.

    ``data`` is the raw encoded bytes (uint8, any shape, ``LAYOUTS[t].row_bytes(n)`` per row) or, for F32/F16, a float
    array of ``shape`` that is converted on writing.
    """

    ggml_type: GGMLType
    shape: tuple[int, ...]
    data: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes this tensor takes in a file (from its type and shape; the data is not encoded)."""
        n_rows = int(np.prod(self.shape[:-1], dtype=np.int64))
        return n_rows * LAYOUTS[GGMLType(self.ggml_type)].row_bytes(self.shape[-1])

    def encoded(self) -> np.ndarray:
        """uint8 (nbytes,): the bytes to write, checked against the type's size."""
        t = GGMLType(self.ggml_type)
        data = self.data
        if data.dtype != np.uint8:
            if t not in (GGMLType.F32, GGMLType.F16):
                raise ValueError(f"{t.name} tensor data must be raw uint8 bytes (quantize it first)")
            data = np.ascontiguousarray(data, dtype="<f4" if t == GGMLType.F32 else "<f2").reshape(self.shape)
            data = data.view(np.uint8)
        data = np.ascontiguousarray(data).reshape(-1)
        expected = self.nbytes
        if data.nbytes != expected:
            raise ValueError(f"{t.name} tensor of shape {self.shape} needs {expected} bytes, got {data.nbytes}")
        return data


@dataclasses.dataclass(frozen=True)
class LazyTensor:
    """A tensor whose header is known now and whose data is produced when the writer reaches it.

    ``produce()`` returns what :attr:`RawTensor.data` would hold; it is called once, while writing.
    """

    ggml_type: GGMLType
    shape: tuple[int, ...]
    produce: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        """Bytes this tensor takes in a file."""
        return RawTensor(self.ggml_type, self.shape, np.empty(0, np.uint8)).nbytes

    def encoded(self) -> np.ndarray:
        """uint8 (nbytes,): produce the data and encode it as :meth:`RawTensor.encoded` does."""
        return RawTensor(self.ggml_type, self.shape, self.produce()).encoded()


TensorValue = RawTensor | LazyTensor | np.ndarray
"""What the writers accept for one tensor."""


def as_raw_tensor(value: TensorValue) -> RawTensor | LazyTensor:
    """Wrap a float array as an F32 :class:`RawTensor` (tensors pass through)."""
    if isinstance(value, (RawTensor, LazyTensor)):
        return value
    arr = np.asarray(value, dtype=np.float32)
    return RawTensor(GGMLType.F32, arr.shape, arr)


# --- GGML v3 ------------------------------------------------------------------------------------------


Output = str | os.PathLike | BinaryIO
"""A file path, or a binary stream positioned at its start (``tell()`` must count from 0)."""


@contextlib.contextmanager
def _opened(output: Output) -> Iterator[BinaryIO]:
    if hasattr(output, "write"):
        yield output  # type: ignore[misc]
        return
    with open(output, "wb") as f:  # type: ignore[arg-type]
        yield f


def write_ggml(
    path: Output,
    hparams: HParams,
    vocab: Vocab,
    tensors: Mapping[str, TensorValue],
    *,
    n_mult: int = 256,
) -> Output:
    """Write a GGJT v3 file; vocab pieces are encoded as the 2023 converter did.

    Only ``n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype`` are stored: the format has no room
    for the other hyperparameters.
    """
    path = path if hasattr(path, "write") else Path(path)  # type: ignore[arg-type]
    pieces = to_piece_encoding(vocab, "ggml-v3")
    with _opened(path) as f:
        hp = hparams
        f.write(struct.pack("<9I", GGJT_MAGIC, 3, hp.n_vocab, hp.n_embd, n_mult, hp.n_head, hp.n_layer, hp.n_rot,
                            int(hp.ftype)))
        for piece, score in zip(pieces, vocab.scores):
            f.write(struct.pack("<I", len(piece)) + piece + struct.pack("<f", float(score)))
        for name, value in tensors.items():
            tensor = as_raw_tensor(value)
            data = tensor.encoded()
            file_name = gguf_to_ggml(name).encode()
            ne = tuple(reversed(tensor.shape))
            f.write(struct.pack(f"<3I{len(ne)}I", len(ne), len(file_name), int(tensor.ggml_type), *ne))
            f.write(file_name)
            _pad(f, GGJT_ALIGNMENT)
            f.write(data)  # type: ignore[arg-type]
    return path


def _pad(f: BinaryIO, alignment: int) -> None:
    f.write(b"\0" * ((-f.tell()) % alignment))


# --- GGUF ---------------------------------------------------------------------------------------------


def gguf_metadata(hparams: HParams, vocab: Vocab, name: str = "airoboros-ggml model") -> dict[str, Any]:
    """The GGUF key/values describing a Llama model and its vocabulary."""
    hp = hparams
    meta: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": name,
        "general.file_type": (ValueType.UINT32, int(hp.ftype)),
        "general.quantization_version": (ValueType.UINT32, 2),
        "llama.vocab_size": (ValueType.UINT32, hp.n_vocab),
        "llama.context_length": (ValueType.UINT32, hp.n_ctx_train),
        "llama.embedding_length": (ValueType.UINT32, hp.n_embd),
        "llama.block_count": (ValueType.UINT32, hp.n_layer),
        "llama.feed_forward_length": (ValueType.UINT32, hp.n_ff),
        "llama.attention.head_count": (ValueType.UINT32, hp.n_head),
        "llama.attention.head_count_kv": (ValueType.UINT32, hp.n_head_kv),
        "llama.attention.layer_norm_rms_epsilon": (ValueType.FLOAT32, hp.rms_norm_eps),
        "llama.rope.freq_base": (ValueType.FLOAT32, hp.rope_freq_base),
        "llama.rope.dimension_count": (ValueType.UINT32, hp.n_rot),
    }
    if hp.rope_freq_scale != 1.0:
        meta["llama.rope.scaling.type"] = "linear"
        meta["llama.rope.scaling.factor"] = (ValueType.FLOAT32, 1.0 / hp.rope_freq_scale)
    meta["tokenizer.ggml.model"] = vocab.model
    if vocab.pre is not None:
        meta["tokenizer.ggml.pre"] = vocab.pre
    meta["tokenizer.ggml.tokens"] = (ValueType.STRING, to_piece_encoding(vocab, "gguf"))
    meta["tokenizer.ggml.scores"] = np.asarray(vocab.scores, dtype=np.float32)
    meta["tokenizer.ggml.token_type"] = np.asarray(vocab.token_types, dtype=np.int32)
    if vocab.merges:
        meta["tokenizer.ggml.merges"] = (ValueType.STRING, list(vocab.merges))
    for key, value in (("bos", vocab.bos_id), ("eos", vocab.eos_id), ("unknown", vocab.unk_id),
                       ("padding", vocab.pad_id), ("eot", vocab.eot_id)):
        if value is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = (ValueType.UINT32, value)
    meta["tokenizer.ggml.add_bos_token"] = vocab.add_bos
    meta["tokenizer.ggml.add_eos_token"] = vocab.add_eos
    meta["tokenizer.ggml.add_space_prefix"] = vocab.add_space_prefix
    if vocab.chat_template is not None:
        meta["tokenizer.chat_template"] = vocab.chat_template
    return meta


_NUMPY_TO_GGUF = {
    np.dtype("uint8"): ValueType.UINT8,
    np.dtype("int8"): ValueType.INT8,
    np.dtype("uint16"): ValueType.UINT16,
    np.dtype("int16"): ValueType.INT16,
    np.dtype("uint32"): ValueType.UINT32,
    np.dtype("int32"): ValueType.INT32,
    np.dtype("float32"): ValueType.FLOAT32,
    np.dtype("uint64"): ValueType.UINT64,
    np.dtype("int64"): ValueType.INT64,
    np.dtype("float64"): ValueType.FLOAT64,
    np.dtype("bool"): ValueType.BOOL,
}
_SCALAR_FORMATS = {
    ValueType.UINT8: "<B", ValueType.INT8: "<b", ValueType.UINT16: "<H", ValueType.INT16: "<h",
    ValueType.UINT32: "<I", ValueType.INT32: "<i", ValueType.FLOAT32: "<f", ValueType.BOOL: "<?",
    ValueType.UINT64: "<Q", ValueType.INT64: "<q", ValueType.FLOAT64: "<d",
}


def _gguf_string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _gguf_value(value: Any) -> tuple[ValueType, bytes]:
    """Encode a metadata value: str, bool, int (i32/u64), float (f32), numpy array, or (type, value)."""
    if isinstance(value, tuple):
        vtype, inner = value
        if isinstance(inner, list):  # array of strings
            body = b"".join(_gguf_string(s) for s in inner)
            return ValueType.ARRAY, struct.pack("<IQ", vtype, len(inner)) + body
        return vtype, struct.pack(_SCALAR_FORMATS[vtype], inner)
    if isinstance(value, (str, bytes)):
        return ValueType.STRING, _gguf_string(value)
    if isinstance(value, bool):
        return ValueType.BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        return (ValueType.INT32, struct.pack("<i", value)) if -(1 << 31) <= value < (1 << 31) else (
            ValueType.UINT64, struct.pack("<Q", value))
    if isinstance(value, float):
        return ValueType.FLOAT32, struct.pack("<f", value)
    if isinstance(value, np.ndarray):
        etype = _NUMPY_TO_GGUF[value.dtype]
        arr = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return ValueType.ARRAY, struct.pack("<IQ", etype, arr.size) + arr.tobytes()
    raise TypeError(f"cannot encode GGUF metadata value of type {type(value).__name__}")


def write_gguf(
    path: Output,
    hparams: HParams,
    vocab: Vocab,
    tensors: Mapping[str, TensorValue],
    *,
    metadata: Mapping[str, Any] | None = None,
    alignment: int = DEFAULT_ALIGNMENT,
    version: int = 3,
) -> Output:
    """Write a GGUF file (``version`` 2 or 3) for a Llama model.

    Args:
        path: Output file or binary stream.
        hparams: Hyperparameters, stored as ``llama.*`` keys.
        vocab: Vocabulary, stored as ``tokenizer.ggml.*`` keys (GGML v3-encoded pieces are converted).
        tensors: GGUF tensor name -> data.
        metadata: Extra or overriding key/values (see :func:`_gguf_value` for how Python values map).
        alignment: Data alignment, a power of two; written as ``general.alignment`` when not the default 32.
        version: GGUF version, 2 or 3 (identical layout for little-endian files).
    """
    if version not in (2, 3):
        raise ValueError("GGUF version must be 2 or 3")
    if alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"GGUF alignment must be a power of two (readers refuse others), got {alignment}")
    path = path if hasattr(path, "write") else Path(path)  # type: ignore[arg-type]
    meta = gguf_metadata(hparams, vocab)
    if alignment != DEFAULT_ALIGNMENT:
        meta["general.alignment"] = (ValueType.UINT32, alignment)
    meta.update(metadata or {})
    # headers need only each tensor's type and shape; the data is then encoded and written one tensor at a
    # time, so a lazy Mapping (e.g. the benchmarks' 4 GB model) never has to be in memory at once
    raws = ((name, as_raw_tensor(value)) for name, value in tensors.items())  # one at a time
    infos = [(name, raw.ggml_type, raw.shape, raw.nbytes) for name, raw in raws]
    with _opened(path) as f:
        f.write(GGUF_MAGIC + struct.pack("<IQQ", version, len(infos), len(meta)))
        for key, value in meta.items():
            vtype, body = _gguf_value(value)
            f.write(_gguf_string(key) + struct.pack("<I", vtype) + body)
        offset = 0
        for name, ggml_type_, shape, nbytes in infos:
            ne = tuple(reversed(shape))
            f.write(_gguf_string(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, int(ggml_type_), offset))
            offset += nbytes + (-nbytes) % alignment
        _pad(f, alignment)
        for name, *_ in infos:
            f.write(as_raw_tensor(tensors[name]).encoded())  # type: ignore[arg-type]
            _pad(f, alignment)
    return path
