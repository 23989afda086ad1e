"""The Llama forward pass: weights, KV cache, RoPE, attention."""

from .forward import LlamaForward
from .kv_cache import KVCache
from .weights import LlamaWeights

__all__ = ["KVCache", "LlamaForward", "LlamaWeights"]
