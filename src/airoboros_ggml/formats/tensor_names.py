"""Llama tensor names in both conventions, mapped in one place.

GGUF names are canonical inside the project; GGML v3 files use the original Meta/llama.cpp names.
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

_GGML_LAYER = {v: k for k, v in _LAYER.items()}
_GGML_GLOBAL = {v: k for k, v in _GLOBAL.items()}
_GGUF_RE = re.compile(r"blk\.(\d+)\.(.+)")
_GGML_RE = re.compile(r"layers\.(\d+)\.(.+)")


def gguf_to_ggml(name: str) -> str:
    """GGUF tensor name -> GGML v3 name (unknown names pass through)."""
    if name in _GLOBAL:
        return _GLOBAL[name]
    m = _GGUF_RE.fullmatch(name)
    if m and m.group(2) in _LAYER:
        return f"layers.{m.group(1)}.{_LAYER[m.group(2)]}"
    return name


def ggml_to_gguf(name: str) -> str:
    """GGML v3 tensor name -> GGUF name (unknown names pass through)."""
    if name in _GGML_GLOBAL:
        return _GGML_GLOBAL[name]
    m = _GGML_RE.fullmatch(name)
    if m and m.group(2) in _GGML_LAYER:
        return f"blk.{m.group(1)}.{_GGML_LAYER[m.group(2)]}"
    return name


def layer_name(i: int, suffix: str) -> str:
    """``layer_name(3, "attn_q.weight") == "blk.3.attn_q.weight"``."""
    return f"blk.{i}.{suffix}"
