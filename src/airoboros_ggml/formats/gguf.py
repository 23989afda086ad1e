"""GGUF v2/v3 reader for the ``llama`` architecture.

Layout: ``"GGUF"``, u32 version, u64 tensor count, u64 metadata count; metadata key/values (string =
u64 length + bytes; typed arrays = u32 element type, u64 count, elements); tensor infos (name, u32 n_dims,
n_dims x u64 dims ne0-first, u32 type, u64 offset); data section at the next multiple of
``general.alignment`` (default 32), tensor offsets relative to it.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..ggml_types import FileType
from ..hparams import HParams
from ..vocab import TokenType, Vocab
from .binary import Cursor
from .model_file import ModelFile
from .tensors import TensorHeader, build_tensors, check_hparams, check_llama_tensors

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_KV = 1 << 20
MAX_TENSORS = 1 << 20
MAX_DEPTH = 3


class ValueType(enum.IntEnum):
    """GGUF metadata value types."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


NUMPY_TYPES: dict[ValueType, str] = {
    ValueType.UINT8: "u1",
    ValueType.INT8: "i1",
    ValueType.UINT16: "u2",
    ValueType.INT16: "i2",
    ValueType.UINT32: "u4",
    ValueType.INT32: "i4",
    ValueType.FLOAT32: "f4",
    ValueType.BOOL: "u1",
    ValueType.UINT64: "u8",
    ValueType.INT64: "i8",
    ValueType.FLOAT64: "f8",
}


def _string(cur: Cursor, what: str) -> bytes:
    n = cur.u64(f"{what} length")
    return cur.raw(n, what)


def _value(cur: Cursor, vtype: int, key: str, depth: int = 0) -> Any:
    try:
        vt = ValueType(vtype)
    except ValueError:
        raise cur.fail(f"metadata {key!r} has unknown value type {vtype}") from None
    if vt == ValueType.STRING:
        return _string(cur, f"metadata {key!r}").decode("utf-8", errors="replace")
    if vt != ValueType.ARRAY:
        value = cur.array(NUMPY_TYPES[vt], 1, f"metadata {key!r}")[0]
        if vt == ValueType.FLOAT32:  # shortest decimal that is this float32: 1e-05, not 9.99999975e-06
            return float(str(value))
        return bool(value) if vt == ValueType.BOOL else value.item()
    if depth >= MAX_DEPTH:
        raise cur.fail(f"metadata {key!r} nests arrays too deeply")
    etype = cur.u32(f"metadata {key!r} element type")
    count = cur.u64(f"metadata {key!r} count")
    if etype == ValueType.STRING:
        if count > (cur.size - cur.pos) // 8:
            raise cur.fail(f"metadata {key!r} claims {count} strings, more than the file can hold")
        return cur.strings(count, f"metadata {key!r}")
    if etype == ValueType.ARRAY:
        if count > (cur.size - cur.pos) // 12:
            raise cur.fail(f"metadata {key!r} claims {count} arrays, more than the file can hold")
        return [_value(cur, ValueType.ARRAY, key, depth + 1) for _ in range(count)]
    if etype not in NUMPY_TYPES.keys():
        raise cur.fail(f"metadata {key!r} has unknown array element type {etype}")
    arr = cur.array(NUMPY_TYPES[ValueType(etype)], count, f"metadata {key!r}")
    return arr.astype(bool) if etype == ValueType.BOOL else arr


def _decode_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else _decode_strings(v) for v in value]
    return value


def _read_header(cur: Cursor) -> tuple[int, int, dict[str, Any], dict[str, Any]]:
    """Version, tensor count, raw metadata (strings as bytes) and decoded metadata."""
    path = cur.path
    version = cur.u32("version")
    if version == 1:
        raise ModelFormatError(
            f"{path}: this is a GGUF v1 file (August 2023 pre-release format), which is obsolete and not "
            "supported; download a current GGUF (v2 or v3) or the GGML v3 .bin of the model"
        )
    if version not in (2, 3):
        raise ModelFormatError(
            f"{path}: GGUF version {version} is not supported (only v2 and v3); the file may be newer than "
            "this tool or damaged"
        )
    cur.what = f"GGUF v{version} file"
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise cur.fail(f"absurd header counts ({n_tensors} tensors, {n_kv} metadata entries)")
    raw_meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = _string(cur, "metadata key").decode("utf-8", errors="replace")
        raw_meta[key] = _value(cur, cur.u32(f"metadata {key!r} type"), key)
    metadata = {k: _decode_strings(v) for k, v in raw_meta.items()}
    return version, n_tensors, raw_meta, metadata


def read_gguf_vocab(path: Path, buf: memoryview) -> Vocab:
    """Only the vocabulary of a GGUF file, whatever its architecture (for tokenizers)."""
    _, _, raw_meta, metadata = _read_header(Cursor(buf, path, "GGUF file", pos=4))
    return _vocab(raw_meta, metadata, path)


def read_gguf(path: Path, buf: memoryview, overrides: dict[str, Any]) -> ModelFile:
    """Parse a GGUF file whose bytes are ``buf`` (see :func:`airoboros_ggml.open_model_file`)."""
    cur = Cursor(buf, path, "GGUF file", pos=4)
    version, n_tensors, raw_meta, metadata = _read_header(cur)

    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise ModelFormatError(
            f"{path}: GGUF model architecture is {arch!r}; only 'llama' models (Llama, Llama-2, Mistral-style "
            "and SmolLM-style files) are supported"
        )
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 16:
        raise ModelFormatError(f"{path}: general.alignment = {alignment!r} is invalid (must be a power of two)")

    headers = []
    for _ in range(n_tensors):
        name = _string(cur, "tensor name").decode("utf-8", errors="replace")
        n_dims = cur.u32(f"tensor {name!r} n_dims")
        if not 1 <= n_dims <= 4:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions")
        ne = tuple(int(d) for d in cur.array("u8", n_dims, f"tensor {name!r} dims"))
        type_id = cur.u32(f"tensor {name!r} type")
        headers.append(TensorHeader(name, type_id, ne, cur.u64(f"tensor {name!r} offset")))
    cur.align(alignment)
    data_start = cur.pos
    for h in headers:
        if h.offset % alignment:
            raise ModelFormatError(f"{path}: tensor {h.name!r} offset {h.offset} is not aligned to {alignment}")
    headers = [TensorHeader(h.name, h.type_id, h.ne, data_start + h.offset) for h in headers]
    tensors = build_tensors(headers, buf, path)

    hparams, inferred = _hparams(metadata, tensors, path, overrides)
    check_hparams(hparams, path)
    check_llama_tensors(tensors, hparams, path, lambda n: n)
    vocab = _vocab(raw_meta, metadata, path)
    return ModelFile(path, f"gguf-v{version}", hparams, vocab, tensors, metadata, inferred)


def _hparams(meta: dict[str, Any], tensors, path: Path, overrides: dict[str, Any]) -> tuple[HParams, dict]:
    def get(key: str, default: Any = None, kind: type = int) -> Any:
        value = meta.get(f"llama.{key}", default)
        if value is None:
            raise ModelFormatError(f"{path}: required key llama.{key} is missing")
        if isinstance(value, (list, np.ndarray)) or isinstance(value, str):
            raise ModelFormatError(f"{path}: key llama.{key} has the wrong type ({type(value).__name__})")
        return kind(value)

    inferred: dict[str, str] = {}
    n_embd = get("embedding_length")
    n_head = get("attention.head_count")
    n_vocab = meta.get("llama.vocab_size")
    if n_vocab is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        if "token_embd.weight" in tensors:
            n_vocab = tensors["token_embd.weight"].shape[0]
        elif isinstance(tokens, list):
            n_vocab = len(tokens)
        else:
            raise ModelFormatError(f"{path}: cannot tell the vocabulary size (no llama.vocab_size, no tokens)")
        inferred["n_vocab"] = "from the token list / embedding shape"
    if "llama.attention.head_count_kv" not in meta:
        inferred["n_head_kv"] = "absent: same as n_head"
    if n_head <= 0:
        raise ModelFormatError(f"{path}: llama.attention.head_count = {n_head} is invalid")
    rope_scale = 1.0
    scaling_type = meta.get("llama.rope.scaling.type")
    if scaling_type == "linear" and "llama.rope.scaling.factor" in meta:
        factor = float(meta["llama.rope.scaling.factor"])
        rope_scale = 1.0 / factor if factor > 0 else float("nan")
    elif "llama.rope.scale_linear" in meta:
        factor = float(meta["llama.rope.scale_linear"])
        rope_scale = 1.0 / factor if factor > 0 else float("nan")
    else:
        inferred["rope_freq_scale"] = "absent: default 1.0"
    if "llama.rope.freq_base" not in meta:
        inferred["rope_freq_base"] = "absent: default 10000"
    ftype = meta.get("general.file_type", 0)
    try:
        ftype = FileType(int(ftype))
    except (ValueError, TypeError):
        pass
    hp = HParams(
        n_vocab=int(n_vocab),
        n_embd=n_embd,
        n_layer=get("block_count"),
        n_head=n_head,
        n_head_kv=get("attention.head_count_kv", n_head),
        n_ff=get("feed_forward_length"),
        n_rot=get("rope.dimension_count", n_embd // n_head),
        n_ctx_train=get("context_length"),
        rms_norm_eps=get("attention.layer_norm_rms_epsilon", 1e-5, float),
        rope_freq_base=get("rope.freq_base", 10000.0, float),
        rope_freq_scale=rope_scale,
        ftype=ftype,
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return (hp.replace(**overrides) if overrides else hp), inferred


def _vocab(raw: dict[str, Any], meta: dict[str, Any], path: Path) -> Vocab:
    tokens = raw.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, bytes) for t in tokens):
        raise ModelFormatError(f"{path}: tokenizer.ggml.tokens is missing or not a list of strings")
    n = len(tokens)

    def array(key: str, dtype: str, default: float) -> np.ndarray:
        value = meta.get(key)
        if value is None:
            return np.full(n, default, dtype=dtype)
        if not isinstance(value, np.ndarray) or value.shape != (n,):
            raise ModelFormatError(f"{path}: {key} must be a numeric array of {n} entries")
        return value.astype(dtype)

    def token_id(key: str, default: int | None) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}", default)
        if value is None:
            return None
        if not isinstance(value, int) or not 0 <= value < n:
            raise ModelFormatError(f"{path}: tokenizer.ggml.{key} = {value!r} is not a token id")
        return value

    model = meta.get("tokenizer.ggml.model", "llama")
    if model not in ("llama", "gpt2"):
        raise ModelFormatError(
            f"{path}: tokenizer model {model!r} is not supported (only 'llama' SentencePiece and 'gpt2' BPE)"
        )
    merges = meta.get("tokenizer.ggml.merges", [])
    if not isinstance(merges, list):
        raise ModelFormatError(f"{path}: tokenizer.ggml.merges must be a list of strings")
    chat_template = meta.get("tokenizer.chat_template")
    return Vocab(
        pieces=tokens,
        scores=array("tokenizer.ggml.scores", "float32", 0.0),
        token_types=array("tokenizer.ggml.token_type", "int32", TokenType.NORMAL),
        model=model,
        piece_encoding="gguf",
        pre=meta.get("tokenizer.ggml.pre"),
        merges=merges,
        bos_id=token_id("bos_token_id", 1 if model == "llama" and n > 1 else None),
        eos_id=token_id("eos_token_id", 2 if model == "llama" and n > 2 else None),
        unk_id=token_id("unknown_token_id", 0 if model == "llama" else None),
        pad_id=token_id("padding_token_id", None),
        eot_id=token_id("eot_token_id", None),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama")),
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", model == "llama")),
        chat_template=chat_template if isinstance(chat_template, str) else None,
    )
