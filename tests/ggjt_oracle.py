"""An independent GGUF -> GGJT v3 converter: the oracle for our GGML v3 reader (issue 15).

Built only from ``gguf`` (``GGUFReader`` for the source, ``TensorNameMap`` for the original Meta/llama.cpp
tensor names, "llama-pth" in gguf-py's table), ``struct`` and the 2023 converter's conventions as
docs/formats.md ("Vocabulary encoding", "GGJT v3 layout") documents them. Nothing here comes from
``airoboros_ggml``: a mistake in our tensor-name table, our vocabulary encoding or our header layout cannot be
shared by this writer and our reader.

Also used by ``scripts/make_ggml_v3_oracle.py``, which makes the committed fixture and its ctransformers
golden logits.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

DATA = Path(__file__).parent / "data"
LLAMA2_VOCAB = DATA / "ggml-vocab-llama-spm.gguf"

GGJT_MAGIC = 0x67676A74  # b"tjgg" on disk
GGJT_ALIGNMENT = 32

# the per-model and per-layer names of the original Llama checkpoints, which GGML v3 files kept
PTH_GLOBAL = ("tok_embeddings", "norm", "output")
PTH_LAYER = (
    "attention_norm", "attention.wq", "attention.wk", "attention.wv", "attention.wo",
    "ffn_norm", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3",
)


def gguf_to_pth_names(n_layer: int) -> dict[str, str]:
    """GGUF tensor name -> original Llama name, as gguf-py's ``TensorNameMap`` relates them."""
    tmap = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, n_layer)
    pth = list(PTH_GLOBAL) + [f"layers.{i}.{s}" for i in range(n_layer) for s in PTH_LAYER]
    out = {}
    for name in pth:
        gguf_name = tmap.get_name(name)
        assert gguf_name is not None, name
        out[gguf_name + ".weight"] = name + ".weight"
    return out


def spm_piece_as_ggml_v3(piece: str, token_type: int) -> bytes:
    """A SentencePiece piece as the 2023 converter wrote it (docs/formats.md)."""
    if token_type == gguf.TokenType.UNKNOWN:
        return " \u2047 ".encode()
    if token_type == gguf.TokenType.CONTROL:
        return b""
    if token_type == gguf.TokenType.BYTE:
        return bytes([int(piece[3:-1], 16)])  # "<0xNN>" -> the raw byte
    return piece.replace("\u2581", " ").encode()


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def _n_mult_for(n_embd: int, n_ff: int) -> int:
    """An ``n_mult`` for which the GGML-era formula gives ``n_ff`` (other loaders derive n_ff from it)."""
    for n_mult in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if ((2 * (4 * n_embd) // 3 + n_mult - 1) // n_mult) * n_mult == n_ff:
            return n_mult
    return 256


def convert_gguf_to_ggjt(src: str | Path, dest: str | Path) -> Path:
    """Write ``src`` (a Llama GGUF with a SentencePiece vocabulary) as a GGJT v3 file at ``dest``.

    Tensor data is copied byte for byte (GGUF Llama files keep GGML v3's permuted Wq/Wk layout); tied
    embeddings get an explicit ``output.weight`` copy, since GGML v3 files always had one.
    """
    reader = gguf.GGUFReader(src)
    arch = _field(reader, "general.architecture")
    assert arch == "llama", arch
    n_embd = _field(reader, "llama.embedding_length")
    n_head = _field(reader, "llama.attention.head_count")
    n_layer = _field(reader, "llama.block_count")
    n_ff = _field(reader, "llama.feed_forward_length")
    n_rot = _field(reader, "llama.rope.dimension_count") if "llama.rope.dimension_count" in reader.fields else \
        n_embd // n_head
    ftype = _field(reader, "general.file_type") if "general.file_type" in reader.fields else 0
    assert _field(reader, "tokenizer.ggml.model") == "llama", "GGML v3 vocabularies are SentencePiece"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores")
    types = _field(reader, "tokenizer.ggml.token_type")

    names = gguf_to_pth_names(n_layer)
    tensors = {t.name: t for t in reader.tensors}
    if "output.weight" not in tensors:
        tensors["output.weight"] = tensors["token_embd.weight"]
    order = [g for g in names if g in tensors]
    assert len(order) == len(names) == len(tensors), sorted(set(tensors) ^ set(names))

    dest = Path(dest)
    with open(dest, "wb") as f:
        f.write(struct.pack("<II", GGJT_MAGIC, 3))
        f.write(struct.pack("<7I", len(tokens), n_embd, _n_mult_for(n_embd, n_ff), n_head, n_layer, n_rot, ftype))
        for piece, score, token_type in zip(tokens, scores, types):
            text = spm_piece_as_ggml_v3(piece, int(token_type))
            f.write(struct.pack("<I", len(text)) + text + struct.pack("<f", score))
        for gguf_name in order:
            t = tensors[gguf_name]
            name = names[gguf_name].encode()
            ne = [int(d) for d in t.shape]  # ne0 (row length) first, as GGJT stores them
            f.write(struct.pack(f"<3I{len(ne)}I", len(ne), len(name), int(t.tensor_type), *ne))
            f.write(name)
            f.write(b"\0" * (-f.tell() % GGJT_ALIGNMENT))
            f.write(np.ascontiguousarray(t.data).tobytes())
    return dest


def llama_shapes(n_vocab: int, n_embd: int, n_head: int, n_head_kv: int, n_layer: int, n_ff: int) -> dict:
    """GGUF tensor name -> numpy-order shape (rows, row length) for a Llama, in file order."""
    kv = n_embd // n_head * n_head_kv
    out: dict[str, tuple[int, ...]] = {"token_embd.weight": (n_vocab, n_embd), "output_norm.weight": (n_embd,),
                                       "output.weight": (n_vocab, n_embd)}
    for i in range(n_layer):
        out |= {
            f"blk.{i}.attn_norm.weight": (n_embd,), f"blk.{i}.attn_q.weight": (n_embd, n_embd),
            f"blk.{i}.attn_k.weight": (kv, n_embd), f"blk.{i}.attn_v.weight": (kv, n_embd),
            f"blk.{i}.attn_output.weight": (n_embd, n_embd), f"blk.{i}.ffn_norm.weight": (n_embd,),
            f"blk.{i}.ffn_gate.weight": (n_ff, n_embd), f"blk.{i}.ffn_up.weight": (n_ff, n_embd),
            f"blk.{i}.ffn_down.weight": (n_embd, n_ff),
        }
    return out


def gguf_encode(values: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """float32 (rows, n) -> the tensor as ``GGUFWriter.add_tensor`` takes it, with gguf-py's quantizers."""
    if qtype == gguf.GGMLQuantizationType.F32:
        return values
    if qtype == gguf.GGMLQuantizationType.F16:
        return values.astype(np.float16)
    return gguf.quants.quantize(values, qtype)


def read_vocab(path: str | Path, n_vocab: int) -> tuple[list, list, list]:
    """The first ``n_vocab`` pieces, scores and token types of a GGUF file's vocabulary."""
    reader = gguf.GGUFReader(path)
    return tuple(_field(reader, f"tokenizer.ggml.{key}")[:n_vocab] for key in ("tokens", "scores", "token_type"))


def write_llama_gguf(
    path: str | Path,
    vocab: tuple[list, list, list],
    *,
    n_embd: int = 256,
    n_head: int = 4,
    n_head_kv: int = 4,
    n_layer: int = 2,
    n_ff: int = 768,
    types: Callable[[str], gguf.GGMLQuantizationType] = lambda name: gguf.GGMLQuantizationType.Q8_0,
    encode: Callable[[np.ndarray, gguf.GGMLQuantizationType], np.ndarray] = gguf_encode,
    seed: int = 15,
) -> Path:
    """A random Llama GGUF written by gguf-py's ``GGUFWriter``, with ``vocab`` (see :func:`read_vocab`).

    Weights are Gaussian (std 0.05), norms f32 around 1; ``types(name)`` picks each matrix's type and
    ``encode`` quantizes it. Hyperparameters are GGML v3's defaults (context 4096, eps 1e-5, RoPE 10000).
    """
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("ggml-v3 oracle (synthetic)")
    w.add_file_type(15)  # mostly Q4_K_M
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab[0])
    w.add_token_scores(vocab[1])
    w.add_token_types(vocab[2])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    rng = np.random.default_rng(seed)
    for name, shape in llama_shapes(len(vocab[0]), n_embd, n_head, n_head_kv, n_layer, n_ff).items():
        if len(shape) == 1:
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            continue
        qtype = types(name)
        data = encode((rng.standard_normal(shape) * 0.05).astype(np.float32), qtype)  # float32 (rows, n) in
        w.add_tensor(name, data, raw_dtype=None if data.dtype != np.uint8 else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
