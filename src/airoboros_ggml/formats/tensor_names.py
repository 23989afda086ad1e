"""Llama tensor names in both conventions, mapped in one place.

GGUF names are canonical inside the project; GGML v3 files use the original Meta/llama.cpp names
(docs/formats.md, "Tensor names").
"""

from __future__ import annotations

import re

# GGUF name (per-layer names with "{i}") -> GGML v3 name
_GLOBAL = {
    "token_embd.weight": "tok_embeddings.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "output.weight",
}
_LAYER = {
    "attn_norm.weight": "attention_norm.weight",
    "attn_q.weight": "attention.wq.weight",
    "attn_k.weight": "attention.wk.weight",
    "attn_v.weight": "attention.wv.weight",
    "attn_output.weight": "attention.wo.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "feed_forward.w1.weight",
    "ffn_down.weight": "feed_forward.w2.weight",
    "ffn_up.weight": "feed_forward.w3.weight",
}
LAYER_TENSORS: tuple[str, ...] = tuple(_LAYER)
"""Per-layer tensor suffixes (GGUF convention)."""

_TO_GGML = (_GLOBAL, re.compile(r"blk\.(\d+)\.(.+)"), _LAYER, "layers.{}.{}")
_TO_GGUF = (
    {v: k for k, v in _GLOBAL.items()},
    re.compile(r"layers\.(\d+)\.(.+)"),
    {v: k for k, v in _LAYER.items()},
    "blk.{}.{}",
)


def _rename(name: str, convention: tuple) -> str:
    global_names, layer_re, layer_names, layer_format = convention
    if name in global_names:
        return global_names[name]
    m = layer_re.fullmatch(name)
    if m and m.group(2) in layer_names:
        return layer_format.format(m.group(1), layer_names[m.group(2)])
    return name


def gguf_to_ggml(name: str) -> str:
    """GGUF tensor name -> GGML v3 name (unknown names pass through)."""
    return _rename(name, _TO_GGML)


def ggml_to_gguf(name: str) -> str:
    """GGML v3 tensor name -> GGUF name (unknown names pass through)."""
    return _rename(name, _TO_GGUF)


def layer_name(i: int, suffix: str) -> str:
    """``layer_name(3, "attn_q.weight") == "blk.3.attn_q.weight"``."""
    return f"blk.{i}.{suffix}"
