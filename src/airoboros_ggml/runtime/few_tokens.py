"""The forward pass of a few tokens at a time (decode steps, scheduler steps, short prompts), kept lean.

Batches of up to :data:`FEW_TOKENS` tokens run through five parallel kernel calls per layer:

1. RMSNorm of ``x``, one 8-bit quantization of it, and the Q, K and V products (one
   :func:`~airoboros_ggml.quants.matrix_group` call);
2. attention of the new tokens over the cache (:func:`.decode_attention.attend_one` straight on the cache for
   a single token, :func:`.attention.attend` otherwise), after :func:`.step_kernels.rope_qk_into` and the
   cache write;
3. the Wo product with the residual ``x += ...`` folded in;
4. RMSNorm, quantization and the gate and up products;
5. :func:`.step_kernels.silu_mul_into`, then the down product with its residual.

Every intermediate lives in buffers made once (views per batch size are cached), so the layer loop
allocates nothing. Matrices without an integer kernel (``exact_activations``, F16/F32 weights) go through
:meth:`~airoboros_ggml.quants.WeightMatrix.matmul` with the same compiled norm: the two paths differ only
in their product kernels. Longer batches take :meth:`.forward.LlamaForward.hidden`'s tiled path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ggml_types import GGMLType
from ..hparams import HParams
from ..quants import WeightMatrix
from ..quants.int_group import ActivationBlocks, readonly, rms_norm_into
from ..quants.weight import INT_MATMUL_MAX_TOKENS, matrix_group
from .attention import attend
from .decode_attention import attend_one
from .kv_cache import KVBatch, KVCache
from .rope import rope_tables
from .step_kernels import rope_qk_into, silu_mul_into
from .weights import MATRIX_ROLES, LlamaWeights

FEW_TOKENS = INT_MATMUL_MAX_TOKENS
"""Largest batch this path takes (the integer kernels' limit; longer batches use tiles + BLAS)."""


class Products:
    """One input times 1 to 3 matrices: integer groups per activation type, exact products for the rest.

    Args:
        mats: the matrices (same ``n_in``).
        blocks: activation buffers shared by every product of the model, keyed by (type, n_in); filled here.
        capacity: most tokens per call.
        families: every weight type of the model per activation type (:func:`activation_families`).
    """

    def __init__(self, mats: Sequence[WeightMatrix], blocks: dict[tuple[GGMLType, int], ActivationBlocks],
                 capacity: int, families: dict[GGMLType, frozenset[GGMLType]] | None = None) -> None:
        self.mats = tuple(mats)
        n_in = self.mats[0].n_in
        by_type: dict[GGMLType, list[int]] = {}
        for i, m in enumerate(self.mats):
            if m.activation_type is not None:
                by_type.setdefault(m.activation_type, []).append(i)
        self.groups = []  # (MatrixGroup, matrix indices, activation buffers)
        for t, idx in by_type.items():
            acts = blocks.get((t, n_in))
            if acts is None:
                acts = blocks[(t, n_in)] = ActivationBlocks(t, capacity, n_in)
            family = None if families is None else families[t]
            self.groups.append((matrix_group([self.mats[i] for i in idx], family), idx, acts))
        self.exact = [i for i, m in enumerate(self.mats) if m.activation_type is None]
        self._xn = np.empty((capacity, n_in), np.float32) if self.exact else None  # float32 (capacity, n_in)
        self._whole = len(self.groups) == 1 and not self.exact

    def __call__(self, x: np.ndarray, outs: Sequence[np.ndarray], norm: np.ndarray | None = None,
                 eps: float = 0.0, residual: np.ndarray | None = None) -> None:
        """``outs[i] = n @ W_i.T`` with ``n = RMSNorm(x) * norm`` (or x); then ``residual += outs[0]`` if given.

        x float32 (n_tok, n_in) and outs float32 (n_tok, n_out_i), contiguous; residual float32
        (n_tok, n_out_0) or None.
        """
        if self._whole:
            group, _, acts = self.groups[0]
            group(x, acts, outs, norm, eps, residual)
            return
        for group, idx, acts in self.groups:
            group(x, acts, [outs[i] for i in idx], norm, eps, residual if idx[0] == 0 else None)
        if self.exact:
            src = x
            if norm is not None:
                src = self._xn[: x.shape[0]]  # float32 (n_tok, n_in)
                rms_norm_into(x, norm, eps, src)
            for i in self.exact:
                outs[i][...] = self.mats[i].matmul(src)
            if residual is not None and self.exact[0] == 0:
                residual += outs[0]


def activation_families(weights: LlamaWeights) -> dict[GGMLType, frozenset[GGMLType]]:
    """The weight types of the model's matrices per 8-bit activation type (one type: one-type group kernels)."""
    mats = [weights.output] + [getattr(lw, role) for lw in weights.layers for role in MATRIX_ROLES]
    families: dict[GGMLType, set[GGMLType]] = {}
    for m in mats:
        if m.activation_type is not None:
            families.setdefault(m.activation_type, set()).add(m.ggml_type)
    return {act: frozenset(types) for act, types in families.items()}


class FewTokenForward:
    """Evaluates batches of at most ``capacity`` tokens against a :class:`KVCache` (see the module docstring).

    Args:
        hparams: the model's hyperparameters.
        weights: its weights.
        capacity: most tokens per call (at most :data:`FEW_TOKENS`).
    """

    def __init__(self, hparams: HParams, weights: LlamaWeights, capacity: int = FEW_TOKENS) -> None:
        hp = self.hp = hparams
        self.w = weights
        self.capacity = capacity
        blocks: dict[tuple[GGMLType, int], ActivationBlocks] = {}
        fam = activation_families(weights)
        self.layers = [
            (
                Products([lw.wq, lw.wk, lw.wv], blocks, capacity, fam),
                Products([lw.wo], blocks, capacity, fam),
                Products([lw.w_gate, lw.w_up], blocks, capacity, fam),
                Products([lw.w_down], blocks, capacity, fam),
                readonly(lw.attn_norm),  # read-only like file-mapped norms: one kernel specialisation
                readonly(lw.ffn_norm),
            )
            for lw in weights.layers
        ]
        self.output = Products([weights.output], blocks, capacity, fam)
        self._output_norm = readonly(weights.output_norm)
        n_q, n_kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
        self._buffers = {
            "x": np.zeros((capacity, hp.n_embd), np.float32),  # float32 (capacity, n_embd) hidden state
            "q": np.zeros((capacity, n_q), np.float32),  # float32 (capacity, n_head * hd)
            "k": np.zeros((capacity, n_kv), np.float32),  # float32 (capacity, n_head_kv * hd)
            "v": np.zeros((capacity, n_kv), np.float32),  # float32 (capacity, n_head_kv * hd)
            "att": np.zeros((capacity, n_q), np.float32),  # float32 (capacity, n_head * hd)
            "tmp": np.zeros((capacity, hp.n_embd), np.float32),  # float32 (capacity, n_embd)
            "g": np.zeros((capacity, hp.n_ff), np.float32),  # float32 (capacity, n_ff)
            "u": np.zeros((capacity, hp.n_ff), np.float32),  # float32 (capacity, n_ff)
        }
        self._views: dict[int, dict[str, np.ndarray]] = {}

    def _rows(self, n_tok: int) -> dict[str, np.ndarray]:
        """Contiguous views of the first n_tok rows of every buffer (q, k, v also per head), made once."""
        views = self._views.get(n_tok)
        if views is None:
            hp = self.hp
            views = {name: buf[:n_tok] for name, buf in self._buffers.items()}
            views["q3"] = views["q"].reshape(n_tok, hp.n_head, hp.head_dim)
            views["k3"] = views["k"].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            views["v3"] = views["v"].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            group = hp.n_head // hp.n_head_kv  # one token's heads grouped by the KV head they share
            views["q_kv"] = views["q"].reshape(n_tok * hp.n_head_kv, group, hp.head_dim)
            views["att_kv"] = views["att"].reshape(n_tok * hp.n_head_kv, group, hp.head_dim)
            self._views[n_tok] = views
        return views

    def hidden(self, tokens: np.ndarray, cache: KVCache, batch: KVBatch) -> np.ndarray:
        """:meth:`.forward.LlamaForward.hidden` of 1..capacity tokens: float32 (n_tok, n_embd) after the output norm."""
        hp = self.hp
        n_tok = len(tokens)
        b = self._rows(n_tok)
        x = b["x"]  # float32 (n_tok, n_embd)
        self.w.token_embd.get_rows(tokens, out=x)
        cos, sin = rope_tables(batch.positions(), hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale)
        eps = hp.rms_norm_eps
        one = batch.spans[0] if n_tok == 1 else None  # a single decode token reads the cache in place
        for il, (qkv, wo, gate_up, down, attn_norm, ffn_norm) in enumerate(self.layers):
            qkv(x, (b["q"], b["k"], b["v"]), attn_norm, eps)
            rope_qk_into(b["q3"], b["k3"], cos, sin)
            cache.update(il, batch, b["k3"], b["v3"])
            if one is not None:
                keys, values = cache.raw(il, one.seq)
                attend_one(b["q_kv"], keys, values, one.end, b["att_kv"])
                att = b["att"]  # float32 (1, n_embd)
            else:
                att = attend(b["q3"], cache, il, batch)  # float32 (n_tok, n_embd)
            wo(att, (b["tmp"],), residual=x)
            gate_up(x, (b["g"], b["u"]), ffn_norm, eps)
            silu_mul_into(b["g"], b["u"])
            down(b["g"], (b["tmp"],), residual=x)
        cache.advance(batch, tokens)
        out = np.empty((n_tok, hp.n_embd), np.float32)  # float32 (n_tok, n_embd)
        rms_norm_into(x, self._output_norm, eps, out)
        return out

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """float32 (n_tok, n_vocab) logits of final hidden states float32 (n_tok, n_embd), n_tok <= capacity."""
        hidden = np.ascontiguousarray(hidden, dtype=np.float32)
        out = np.empty((hidden.shape[0], self.w.output.n_out), np.float32)  # float32 (n_tok, n_vocab)
        self.output(hidden, (out,))
        return out
