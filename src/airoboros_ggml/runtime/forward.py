"""The Llama forward pass as llama.cpp computes it (docs/formats.md, "The forward pass").

Per layer: ``h = x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n)`` with ``n = RMSNorm(x) * attn_norm``, then
``x = h + W_down · (silu(W_gate · m) * W_up · m)`` with ``m = RMSNorm(h) * ffn_norm``; logits =
``output · (RMSNorm(x) * output_norm)``. Prompts go through in chunks of ``n_batch`` tokens using the batched
``matmul`` kernels; batches of up to ``FEW_TOKENS`` (decode steps) take the fused path of :mod:`.few_tokens`.
"""

from __future__ import annotations

import numpy as np

from ..hparams import HParams
from ..quants.int_group import rms_norm_into
from .attention import attend
from .few_tokens import FEW_TOKENS, FewTokenForward
from .kv_cache import KVBatch, KVCache
from .rope import rope_tables
from .step_kernels import rope_qk_into, silu_mul_into
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


def _norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """:func:`rms_norm` through the few-token path's numba kernel (float64 sum of squares).

    One kernel for every batch size: a token's normalised activations, and their 8-bit quantization, do not
    depend on the size of the batch it is in.
    """
    out = np.empty_like(x)  # float32 (n_tok, n_embd)
    rms_norm_into(np.ascontiguousarray(x), weight, eps, out)
    return out


def _project(w, x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` for x float32 (n_tok, n_in) -> float32 (n_tok, n_out) (the kernel is chosen by ``matmul``)."""
    return w.matmul(x)


class LlamaForward:
    """Evaluates tokens against a :class:`KVCache`."""

    def __init__(self, hparams: HParams, weights: LlamaWeights):
        self.hp = hparams
        self.w = weights
        self._few: FewTokenForward | None = None

    @property
    def few(self) -> FewTokenForward:
        """The lean path of batches up to :data:`~.few_tokens.FEW_TOKENS` tokens (buffers made on first use)."""
        if self._few is None:
            self._few = FewTokenForward(self.hp, self.w)
        return self._few

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """float32 (n_tok, n_embd) embeddings of int token ids (n_tok,)."""
        return self.w.token_embd.get_rows(tokens)

    def hidden(self, tokens: np.ndarray, cache: KVCache, batch: KVBatch | None = None) -> np.ndarray:
        """Run ``tokens`` at the cache positions ``batch`` plans for them; record them in the cache.

        Args:
            tokens: int token ids (n_tok,).
            cache: the KV cache to extend.
            batch: where the rows go (:meth:`KVCache.plan`, e.g. several sequences at once); default:
                appended to sequence 0.

        Returns:
            float32 (n_tok, n_embd): final hidden states after the output norm.
        """
        hp = self.hp
        n_tok = len(tokens)
        batch = cache.batch(n_tok) if batch is None else batch
        if batch.n_tok != n_tok:
            raise ValueError(f"the batch plans {batch.n_tok} tokens, got {n_tok}")
        if 0 < n_tok <= FEW_TOKENS:
            return self.few.hidden(np.asarray(tokens, dtype=np.int64), cache, batch)
        cos, sin = rope_tables(batch.positions(), hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale)
        x = self.embed(np.asarray(tokens, dtype=np.int64))  # float32 (n_tok, n_embd)
        for il, layer in enumerate(self.w.layers):
            n = _norm(x, layer.attn_norm, hp.rms_norm_eps)
            attn = self._attention(il, layer, n, cos, sin, batch, cache)  # float32 (n_tok, n_embd)
            x += _project(layer.wo, attn)
            for i in range(0, n_tok, FFN_CHUNK):  # bounds the (chunk, n_ff) temporaries of long prompts
                h = x[i : i + FFN_CHUNK]  # view, updated in place
                m = _norm(h, layer.ffn_norm, hp.rms_norm_eps)
                g = _project(layer.w_gate, m)  # float32 (chunk, n_ff)
                u = _project(layer.w_up, m)  # float32 (chunk, n_ff)
                silu_mul_into(g, u)  # g = silu(g) * u, as the few-token path computes it
                h += _project(layer.w_down, g)
        cache.advance(batch, tokens)
        return _norm(x, self.w.output_norm, hp.rms_norm_eps)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """float32 (n_tok, n_vocab) logits of final hidden states float32 (n_tok, n_embd)."""
        if 0 < hidden.shape[0] <= FEW_TOKENS:
            return self.few.logits(hidden)
        return _project(self.w.output, hidden)

    def _attention(self, il, layer, n, cos, sin, batch: KVBatch, cache: KVCache) -> np.ndarray:
        hp = self.hp
        n_tok, hd, n_kv = n.shape[0], hp.head_dim, hp.n_head_kv
        q = _project(layer.wq, n).reshape(n_tok, hp.n_head, hd)  # float32 (n_tok, n_head, hd)
        k = _project(layer.wk, n).reshape(n_tok, n_kv, hd)  # float32 (n_tok, n_kv, hd)
        v = _project(layer.wv, n).reshape(n_tok, n_kv, hd)  # float32 (n_tok, n_kv, hd)
        rope_qk_into(q, k, cos, sin)
        cache.update(il, batch, k, v)
        return attend(q, cache, il, batch)
