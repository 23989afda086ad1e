"""Small synthetic Llama models and vocabularies, for tests, examples and benchmarks.

Builds a vocabulary shaped like Llama-2's (unk, BOS, EOS, 256 byte pieces, then word pieces) and random
weights for every Llama tensor, typed per file type as llama.cpp chose (:mod:`airoboros_ggml.quants.mix`).
"""

from __future__ import annotations

import re

import numpy as np

from ..formats.tensors import expected_llama_shapes
from ..formats.writer import RawTensor
from ..ggml_types import LAYOUTS, FileType, GGMLType
from ..hparams import HParams
from ..quants.mix import tensor_type
from ..vocab import TokenType, Vocab

_LAYER_RE = re.compile(r"blk\.(\d+)\.")


def tiny_vocab(n_vocab: int = 512, seed: int = 0) -> Vocab:
    """A SentencePiece-style vocabulary (GGUF piece encoding) of ``n_vocab`` >= 260 tokens."""
    if n_vocab < 260:
        raise ValueError("a Llama-style vocabulary needs at least 260 tokens")
    rng = np.random.default_rng(seed)
    pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % b for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    seen = set()
    while len(pieces) < n_vocab:
        word = "".join(rng.choice(list(letters), size=int(rng.integers(1, 6))))
        piece = ("\u2581" + word) if rng.random() < 0.5 else word
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece.encode())
            types.append(TokenType.NORMAL)
    scores = np.zeros(n_vocab, dtype=np.float32)  # float32 (n_vocab,)
    scores[259:] = -np.arange(n_vocab - 259, dtype=np.float32)
    return Vocab(pieces=pieces, scores=scores, token_types=np.asarray(types, dtype=np.int32))


def tiny_hparams(**changes: object) -> HParams:
    """Hyperparameters of a tiny Llama (256 wide so every K-quant fits), with GQA."""
    base = HParams(n_vocab=512, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_rot=64)
    return base.replace(**changes) if changes else base


def random_raw_tensor(ggml_type: GGMLType, shape: tuple[int, ...], rng: np.random.Generator) -> RawTensor:
    """A tensor of random bytes of the right size, with finite fp16 scales where the type has them.

    Quick to make at any size (benchmarks build 7B-shaped files this way); not a quantization of anything.
    """
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    nbytes = n_rows * LAYOUTS[ggml_type].row_bytes(shape[-1])
    if ggml_type in (GGMLType.F32, GGMLType.F16):
        values = rng.standard_normal(shape, dtype=np.float32) * 0.02
        return RawTensor(ggml_type, shape, values)
    size = LAYOUTS[ggml_type].type_size
    data = rng.integers(0, 256, size=nbytes, dtype=np.uint8).reshape(-1, size)  # uint8 (n_blocks, size)
    for offset in LAYOUTS[ggml_type].f16_offsets:  # small positive scales, 2**-20 .. 2**-16: activations stay finite
        scale = rng.uniform(2.0**-20, 2.0**-16, size=len(data)).astype(np.float16)
        data[:, offset : offset + 2] = scale.view(np.uint8).reshape(-1, 2)
    return RawTensor(ggml_type, shape, data.reshape(-1))


def llama_tensor_types(hparams: HParams, ftype: FileType, tied: bool = False) -> dict[str, GGMLType]:
    """GGUF tensor name -> ggml type for every tensor of a Llama model of ``ftype``."""
    types = {}
    for name, shape in expected_llama_shapes(hparams).items():
        if tied and name == "output.weight":
            continue
        m = _LAYER_RE.match(name)
        types[name] = tensor_type(ftype, name, shape[-1], int(m.group(1)) if m else 0, hparams.n_layer)
    return types


def random_llama_tensors(
    hparams: HParams,
    ftype: FileType = FileType.ALL_F32,
    *,
    seed: int = 0,
    tied: bool = False,
    quantize: bool = True,
    scale: float = 0.05,
) -> dict[str, RawTensor]:
    """Random weights for every tensor of a Llama model (GGUF names), typed as llama.cpp would for ``ftype``.

    Args:
        hparams: Model shape.
        ftype: File type deciding each tensor's ggml type.
        seed: RNG seed.
        tied: Leave out ``output.weight`` (tied embeddings, GGUF only).
        quantize: Quantize Gaussian weights with the project's quantizers; ``False`` fills random valid
            blocks instead (fast at any size).
        scale: Standard deviation of the Gaussian weights (norm weights are 1 + small noise).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, RawTensor] = {}
    shapes = expected_llama_shapes(hparams)
    for name, t in llama_tensor_types(hparams, ftype, tied).items():
        shape = shapes[name]
        if len(shape) == 1:
            out[name] = RawTensor(GGMLType.F32, shape, 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32))
        elif not quantize:
            out[name] = random_raw_tensor(t, shape, rng)
        else:
            values = rng.standard_normal(shape, dtype=np.float32) * scale
            if t in (GGMLType.F32, GGMLType.F16):
                out[name] = RawTensor(t, shape, values)
            else:
                from ..quants import quantize as quantize_values

                out[name] = RawTensor(t, shape, quantize_values(values, t))
    return out
