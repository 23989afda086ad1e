"""GGJT v3 ("ggmlv3" .bin) reader — the format of llama.cpp from June to August 2023.

Layout (little endian): u32 magic ``0x67676a74`` (bytes ``tjgg``), u32 version (3); hparams as 7 x u32
``n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype``; ``n_vocab`` x (u32 length, bytes, f32 score);
then tensors to the end of the file, each ``u32 n_dims, u32 name_len, u32 type``, ``n_dims`` x u32 dims
(ne0 first), the name, zero padding to a multiple of 32 bytes from the start of the file, the data.

The file lacks ``n_ff``, ``n_head_kv``, the RMS-norm epsilon, the context length and RoPE settings: the
first two are derived from tensor shapes, the rest take Llama-2 defaults (overridable); see docs/formats.md,
"GGJT v3 layout" and "Hyperparameter inference".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..ggml_types import FileType
from ..hparams import HParams
from ..vocab import GGML_V3_UNKNOWN_PIECE, TokenType, Vocab
from .binary import Cursor
from .model_file import ModelFile
from .tensor_names import gguf_to_ggml
from .tensors import TensorHeader, build_tensors, check_header, check_hparams, check_llama_tensors

GGJT_ALIGNMENT = 32
GGJT_MAGIC = 0x67676A74
GGMF_MAGIC = 0x67676D66
GGML_MAGIC = 0x67676D6C
MAX_VOCAB = 1 << 22

LLAMA2_DEFAULTS = {
    "n_ctx_train": (4096, "not stored in GGML v3: Llama-2 default 4096"),
    "rms_norm_eps": (1e-5, "not stored in GGML v3: Llama-2 default 1e-5"),
    "rope_freq_base": (10000.0, "not stored in GGML v3: default 10000"),
    "rope_freq_scale": (1.0, "not stored in GGML v3: default 1.0"),
}


def legacy_format_error(path: Path, magic: int, version: int | None) -> ModelFormatError:
    """The error for GGML containers other than GGJT v3: what the file is and what to do."""
    advice = (
        "only GGJT v3 (.ggmlv3.*.bin, llama.cpp from June 2023) and GGUF v2/v3 files are supported; "
        "download the ggmlv3 or GGUF version of the model, or re-convert the original weights"
    )
    if magic == GGML_MAGIC:
        what = "an unversioned GGML file (llama.cpp format before May 2023)"
    elif magic == GGMF_MAGIC:
        what = f"a GGMF v{version} file (llama.cpp format of April 2023)"
    elif version in (1, 2):
        what = f"a GGJT v{version} file (llama.cpp format of {'April' if version == 1 else 'May'} 2023, whose " \
            "quantized block layouts differ from v3)"
    else:
        what = f"a GGJT file of unknown version {version}"
    return ModelFormatError(f"{path}: this is {what}; {advice}")


def read_ggjt(path: Path, buf: memoryview, overrides: dict[str, Any]) -> ModelFile:
    """Parse a GGJT v3 file whose bytes are ``buf`` (see :func:`airoboros_ggml.open_model_file`)."""
    cur = Cursor(buf, path, "GGML v3 (GGJT) file", pos=4)
    version = cur.u32("version")
    if version != 3:
        raise legacy_format_error(path, GGJT_MAGIC, version)
    n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype_raw = (cur.u32(f"hparam {i}") for i in range(7))
    if not 0 < n_vocab <= MAX_VOCAB:
        raise cur.fail(f"n_vocab = {n_vocab} is invalid")

    pieces, scores = _read_vocab(cur, n_vocab)

    headers = []
    while cur.pos < cur.size:
        n_dims = cur.u32("tensor n_dims")
        name_len = cur.u32("tensor name length")
        type_id = cur.u32("tensor type")
        if not 1 <= n_dims <= 4 or name_len > 4096:
            raise cur.fail(f"implausible tensor header (n_dims {n_dims}, name length {name_len})")
        ne = tuple(cur.u32("tensor dims") for _ in range(n_dims))
        name = cur.raw(name_len, "tensor name").decode("utf-8", errors="replace")
        cur.align(GGJT_ALIGNMENT)
        header = TensorHeader(name, type_id, ne, cur.pos)
        headers.append(header)
        _, nbytes = check_header(header, path)
        cur.need(nbytes, f"data of tensor {name!r}")
        cur.pos += nbytes
    tensors = build_tensors(headers, buf, path)

    inferred: dict[str, str] = {}
    wk = tensors.get(gguf_to_ggml("blk.0.attn_k.weight"))
    w1 = tensors.get(gguf_to_ggml("blk.0.ffn_gate.weight"))
    if n_head == 0 or n_embd % n_head:
        raise ModelFormatError(f"{path}: n_embd {n_embd} / n_head {n_head} is invalid")
    head_dim = n_embd // n_head
    if wk is not None and wk.shape[0] % head_dim == 0 and wk.shape[0] > 0:
        n_head_kv = wk.shape[0] // head_dim
        inferred["n_head_kv"] = "from the shape of layers.0.attention.wk.weight"
    else:
        n_head_kv = n_head
        inferred["n_head_kv"] = "no wk tensor: same as n_head"
    if w1 is not None:
        n_ff = w1.shape[0]
        inferred["n_ff"] = "from the shape of layers.0.feed_forward.w1.weight"
    else:
        n_ff = ((2 * (4 * n_embd) // 3 + n_mult - 1) // n_mult) * n_mult if n_mult else 0
        inferred["n_ff"] = "no w1 tensor: from n_mult"
    ftype_id = ftype_raw % 1000  # some writers add quantization_version * 1000
    try:
        ftype: FileType | int = FileType(ftype_id)
    except ValueError:
        ftype = ftype_id
    defaults = {}
    for field, (value, how) in LLAMA2_DEFAULTS.items():
        if overrides.get(field) is None:
            inferred[field] = how
            defaults[field] = value
        else:
            inferred.pop(field, None)
            defaults[field] = overrides[field]
    hp = HParams(
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=n_ff,
        n_rot=n_rot,
        ftype=ftype,
        **defaults,
    )
    check_hparams(hp, path)
    check_llama_tensors(tensors, hp, path, gguf_to_ggml)
    return ModelFile(path, "ggjt-v3", hp, _ggml_v3_vocab(pieces, scores), tensors, {}, inferred)


def _read_vocab(cur: Cursor, n_vocab: int) -> tuple[list[bytes], np.ndarray]:
    pieces: list[bytes] = []
    scores = np.empty(n_vocab, dtype=np.float32)  # float32 (n_vocab,)
    for i in range(n_vocab):
        pieces.append(cur.raw(cur.u32(f"vocab entry {i} length"), f"vocab entry {i}"))
        scores[i] = cur.f32(f"vocab entry {i} score")
    return pieces, scores


def _ggml_v3_vocab(pieces: list[bytes], scores: np.ndarray) -> Vocab:
    return Vocab(pieces=pieces, scores=scores, token_types=ggml_v3_token_types(pieces), model="llama",
                 piece_encoding="ggml-v3")


def read_ggjt_vocab(path: Path, buf: memoryview) -> Vocab:
    """Only the vocabulary of a GGJT v3 file (for tokenizers)."""
    cur = Cursor(buf, path, "GGML v3 (GGJT) file", pos=4)
    version = cur.u32("version")
    if version != 3:
        raise legacy_format_error(path, GGJT_MAGIC, version)
    n_vocab = cur.u32("n_vocab")
    if not 0 < n_vocab <= MAX_VOCAB:
        raise cur.fail(f"n_vocab = {n_vocab} is invalid")
    cur.pos += 6 * 4
    return _ggml_v3_vocab(*_read_vocab(cur, n_vocab))


def ggml_v3_token_types(pieces: list[bytes]) -> np.ndarray:
    """Token types of a GGML v3 Llama vocabulary, from the converter's conventions.

    Returns:
        int32 (n_vocab,): id 0 unknown, 1-2 control (empty pieces), 3..258 bytes, the rest normal.
    """
    types = np.full(len(pieces), TokenType.NORMAL, dtype=np.int32)  # int32 (n_vocab,)
    for i, piece in enumerate(pieces[:259]):
        if i == 0 and piece == GGML_V3_UNKNOWN_PIECE:
            types[i] = TokenType.UNKNOWN
        elif i in (1, 2) and piece == b"":
            types[i] = TokenType.CONTROL
        elif 3 <= i < 259 and len(piece) == 1 and piece[0] == i - 3:
            types[i] = TokenType.BYTE
    return types
