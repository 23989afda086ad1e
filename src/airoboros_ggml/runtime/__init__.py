"""The Llama forward pass: weights, KV cache, RoPE, attention."""

from .forward import LlamaForward
from .kv_cache import KVBatch, KVCache
from .weights import LlamaWeights

__all__ = ["KVBatch", "KVCache", "LlamaForward", "LlamaWeights"]
