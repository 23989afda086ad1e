"""The Llama forward pass as llama.cpp computes it (docs/formats.md, "The forward pass").

Per layer: ``h = x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n)`` with ``n = RMSNorm(x) * attn_norm``, then
``x = h + W_down · (silu(W_gate · m) * W_up · m)`` with ``m = RMSNorm(h) * ffn_norm``; logits =
``output · (RMSNorm(x) * output_norm)``. Prompts go through in chunks of ``n_batch`` tokens using the batched
``matmul`` kernels; single tokens use ``matvec``.
"""

from __future__ import annotations

import numpy as np

from ..hparams import HParams
from .decode_attention import attend_one
from .kv_cache import KVCache
from .rope import apply_rope, rope_tables
from .weights import LlamaWeights

FFN_CHUNK = 128
"""Prompt tokens per feed-forward pass: caps the (tokens, n_ff) float32 temporaries (22 MiB each for 7B);
BLAS runs as fast at 128 rows as at 512 here."""


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x²) + eps) * weight`` over the last axis; x float32 (n_tok, n_embd)."""
    ms = np.einsum("ij,ij->i", x, x, dtype=np.float32) / np.float32(x.shape[-1])  # float32 (n_tok,)
    return x * (np.float32(1.0) / np.sqrt(ms + np.float32(eps)))[:, None] * weight


def silu_mul(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``silu(g) * u`` computed in place in ``g`` (one temporary), for float32 (n_tok, n_ff) arrays."""
    t = np.negative(g)
    with np.errstate(over="ignore"):  # exp(-g) = inf for very negative g gives silu = -0, as it should
        np.exp(t, out=t)
    t += np.float32(1.0)
    g /= t
    g *= u
    return g


def _project(w, x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` for x float32 (n_tok, n_in) -> float32 (n_tok, n_out)."""
    if x.shape[0] == 1:
        return w.matvec(x[0])[None, :]
    return w.matmul(x)


class LlamaForward:
    """Evaluates tokens against a :class:`KVCache`."""

    def __init__(self, hparams: HParams, weights: LlamaWeights):
        self.hp = hparams
        self.w = weights

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """float32 (n_tok, n_embd) embeddings of int token ids (n_tok,)."""
        return self.w.token_embd.get_rows(tokens)

    def hidden(self, tokens: np.ndarray, cache: KVCache) -> np.ndarray:
        """Run ``tokens`` at positions ``cache.n_past...``; append them to the cache.

        Returns:
            float32 (n_tok, n_embd): final hidden states after the output norm.
        """
        hp = self.hp
        n_tok = len(tokens)
        p0 = cache.n_past
        if p0 + n_tok > cache.n_ctx:
            raise ValueError(f"{p0 + n_tok} positions do not fit in the context of {cache.n_ctx}")
        positions = np.arange(p0, p0 + n_tok)
        cos, sin = rope_tables(positions, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale)
        x = self.embed(np.asarray(tokens, dtype=np.int64))  # float32 (n_tok, n_embd)
        for il, layer in enumerate(self.w.layers):
            n = rms_norm(x, layer.attn_norm, hp.rms_norm_eps)
            attn = self._attention(il, layer, n, cos, sin, p0, cache)  # float32 (n_tok, n_embd)
            x += _project(layer.wo, attn)
            for i in range(0, n_tok, FFN_CHUNK):  # bounds the (chunk, n_ff) temporaries of long prompts
                h = x[i : i + FFN_CHUNK]  # view, updated in place
                m = rms_norm(h, layer.ffn_norm, hp.rms_norm_eps)
                g = _project(layer.w_gate, m)  # float32 (chunk, n_ff)
                u = _project(layer.w_up, m)  # float32 (chunk, n_ff)
                h += _project(layer.w_down, silu_mul(g, u))
        cache.tokens.extend(int(t) for t in tokens)
        return rms_norm(x, self.w.output_norm, hp.rms_norm_eps)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """float32 (n_tok, n_vocab) logits of final hidden states float32 (n_tok, n_embd)."""
        return _project(self.w.output, hidden)

    def _attention(self, il, layer, n, cos, sin, p0, cache: KVCache) -> np.ndarray:
        hp = self.hp
        n_tok, hd, n_kv = n.shape[0], hp.head_dim, hp.n_head_kv
        group = hp.n_head // n_kv
        q = _project(layer.wq, n).reshape(n_tok, hp.n_head, hd)  # float32 (n_tok, n_head, hd)
        k = _project(layer.wk, n).reshape(n_tok, n_kv, hd)  # float32 (n_tok, n_kv, hd)
        v = _project(layer.wv, n).reshape(n_tok, n_kv, hd)  # float32 (n_tok, n_kv, hd)
        apply_rope(q, cos, sin)
        apply_rope(k, cos, sin)
        end = p0 + n_tok
        cache.k[il, :, p0:end] = k.transpose(1, 0, 2)
        cache.v[il, :, p0:end] = v.transpose(1, 0, 2)
        # queries grouped by the KV head they share: (n_kv, group * n_tok, hd)
        qg = q.reshape(n_tok, n_kv, group, hd).transpose(1, 2, 0, 3).reshape(n_kv, group * n_tok, hd)
        if n_tok == 1:  # straight from the cache, no float32 copy of it
            out = np.empty((n_kv, group, hd), dtype=np.float32)  # float32 (n_kv, group, hd)
            attend_one(np.ascontiguousarray(qg), _kernel_view(cache.k[il]), _kernel_view(cache.v[il]), end, out)
        else:  # one KV head at a time keeps the (group * n_tok, n_keys) scores small
            keys = cache.k[il, :, :end].astype(np.float32, copy=False)  # float32 (n_kv, n_keys, hd)
            values = cache.v[il, :, :end].astype(np.float32, copy=False)  # float32 (n_kv, n_keys, hd)
            mask = np.arange(end)[None, :] > (p0 + np.arange(n_tok))[:, None]  # bool (n_tok, n_keys)
            mask = np.broadcast_to(mask, (group, n_tok, end)).reshape(group * n_tok, end)
            out = np.stack([_attend(qg[h], keys[h], values[h], hd, mask) for h in range(n_kv)])
        return out.reshape(n_kv, group, n_tok, hd).transpose(2, 0, 1, 3).reshape(n_tok, hp.n_embd)


def _kernel_view(a: np.ndarray) -> np.ndarray:
    """A cache layer as :func:`attend_one` takes it: float32 as is, float16 as its uint16 bit patterns."""
    return a.view(np.uint16) if a.dtype == np.float16 else a


def _attend(q: np.ndarray, keys: np.ndarray, values: np.ndarray, hd: int, mask: np.ndarray | None) -> np.ndarray:
    """Softmax attention: q (..., n_q, hd), keys/values (..., n_keys, hd) -> (..., n_q, hd).

    ``mask`` bool (n_q, n_keys) is True where a query may not see a key (causal mask).
    """
    scores = np.matmul(q, np.swapaxes(keys, -1, -2))  # float32 (..., n_q, n_keys)
    scores *= np.float32(1.0 / np.sqrt(hd))
    if mask is not None:
        scores[..., mask] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return np.matmul(scores, values)
