"""A preallocated key/value cache with sequence slots; the one place that knows its layout.

The forward pass never indexes the cache's arrays. For each batch of tokens it asks the cache where they go
(:meth:`KVCache.batch`, or :meth:`KVCache.plan` for several sequences at once: a :class:`KVBatch` of
:class:`KVSpan`), writes each layer's new keys and values with :meth:`KVCache.update`, reads them back with
:meth:`KVCache.keys`/:meth:`KVCache.values` (float32, for prompt batches) or :meth:`KVCache.raw` (the
storage as compiled kernels read it, for one-token decoding), and finally records the tokens with
:meth:`KVCache.advance`.

Sequence slots: a cache holds ``n_seq`` independent sequences, each with its own positions
``0..n_ctx-1`` and its own token list; a token attends only to keys of its own sequence. One batch may
extend several sequences (one span of consecutive rows each), as a continuous-batching scheduler needs.
With ``n_seq=1`` (the default) everything is sequence 0.
"""

from __future__ import annotations

import dataclasses
import mmap
from collections.abc import Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..hparams import HParams
from ..quants import simd as S

KV_TYPES = {"f16": np.float16, "f32": np.float32}
"""Storage types of the cache: ``f16`` (as llama.cpp; half the memory) or ``f32`` (exact)."""


def _lazy_zeros(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zero array on an anonymous map whose pages become resident only when written.

    Transparent huge pages are refused for it: with them, writing one position of a head would make a
    whole 2 MiB page resident, and a short prompt would fill the cache's full size in RSS.
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = mmap.mmap(-1, max(nbytes, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:  # pragma: no cover - kernels without THP
            pass
    return np.frombuffer(buf, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize).reshape(shape)


@intrinsic
def _kv_put(typingctx, arr, idx, value):
    """``arr.flat[idx] = value`` for a float32 array, or a uint16 array of f16 bits (rounded to nearest even)."""
    if not isinstance(arr, types.Array) or arr.dtype not in (types.uint16, types.float32) or value != types.float32:
        return None
    half = arr.dtype == types.uint16
    sig = types.void(arr, idx, value)

    def codegen(context, builder, signature, args):
        ptr = S.array_ptr(context, builder, signature.args[0], args[0], args[1])
        if half:
            bits = builder.bitcast(builder.fptrunc(args[2], ir.HalfType()), S.I16)
            builder.store(bits, builder.bitcast(ptr, S.I16.as_pointer()))
        else:
            builder.store(args[2], ptr)
        return context.get_dummy_value()

    return sig, codegen


@dataclasses.dataclass(frozen=True, slots=True)
class KVSpan:
    """Consecutive rows of a batch that extend one sequence at consecutive positions."""

    seq: int
    """Sequence slot."""
    row: int
    """First row of the batch that belongs to this span."""
    start: int
    """Position of the span's first token (the sequence's length before the batch)."""
    n_tok: int
    """Tokens in the span."""

    @property
    def rows(self) -> slice:
        """The span's rows of the batch."""
        return slice(self.row, self.row + self.n_tok)

    @property
    def end(self) -> int:
        """Positions of the sequence in use once the span is written (keys a query of the span may see)."""
        return self.start + self.n_tok


@numba.njit(cache=True)
def store_spans(keys, values, layer, seqs, starts, rows, counts, k, v):
    """Write one layer's keys and values of every span of a batch into the cache, in one call.

    keys/values: the whole cache (n_seq, n_layer, n_head_kv, n_ctx, hd), float32 or uint16 holding f16 bit
    patterns (the same rounding as numpy's ``astype``); span i: counts[i] rows from batch row rows[i] at
    positions starts[i].. of sequence seqs[i] (int64 (n_spans,) each); k, v float32 (n_tok, n_head_kv, hd).
    """
    n_layer, n_kv, n_ctx, hd = keys.shape[1], keys.shape[2], keys.shape[3], keys.shape[4]
    for i in range(seqs.shape[0]):
        base = (seqs[i] * n_layer + layer) * n_kv
        for t in range(counts[i]):
            r = rows[i] + t
            for h in range(n_kv):
                o = ((base + h) * n_ctx + starts[i] + t) * hd
                for d in range(hd):
                    _kv_put(keys, o + d, k[r, h, d])
                    _kv_put(values, o + d, v[r, h, d])


@dataclasses.dataclass(frozen=True, slots=True)
class KVBatch:
    """Where the tokens of one forward batch go: one span per sequence, spans in row order."""

    spans: tuple[KVSpan, ...]
    arrays: tuple[np.ndarray, ...] = dataclasses.field(init=False, repr=False, compare=False)
    """int64 (n_spans,) each: the spans' sequences, start positions, first rows and token counts."""

    def __post_init__(self) -> None:
        fields = ([s.seq for s in self.spans], [s.start for s in self.spans], [s.row for s in self.spans],
                  [s.n_tok for s in self.spans])
        object.__setattr__(self, "arrays", tuple(np.array(f, dtype=np.int64) for f in fields))

    @property
    def n_tok(self) -> int:
        """Tokens in the batch."""
        return sum(s.n_tok for s in self.spans)

    def positions(self) -> np.ndarray:
        """int64 (n_tok,) position of every row in its own sequence (for RoPE)."""
        if len(self.spans) == 1:
            return np.arange(self.spans[0].start, self.spans[0].end)
        return np.concatenate([np.arange(s.start, s.end) for s in self.spans])


class KVCache:
    """Keys and values of every layer for ``n_ctx`` positions in each of ``n_seq`` sequence slots.

    Resident memory grows with the positions actually used (see :func:`_lazy_zeros`).

    Args:
        hparams: the model's hyperparameters.
        n_ctx: positions to hold per sequence.
        kv_type: ``"f16"`` (default, as llama.cpp) or ``"f32"``.
        n_seq: independent sequence slots.
    """

    def __init__(self, hparams: HParams, n_ctx: int, kv_type: str = "f16", n_seq: int = 1):
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
        if n_seq < 1:
            raise ValueError(f"n_seq must be at least 1, got {n_seq}")
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        self.kv_type = kv_type
        shape = (n_seq, hparams.n_layer, hparams.n_head_kv, n_ctx, hparams.head_dim)
        self.k = _lazy_zeros(shape, KV_TYPES[kv_type])  # (n_seq, n_layer, n_head_kv, n_ctx, head_dim)
        self.v = _lazy_zeros(shape, KV_TYPES[kv_type])  # (n_seq, n_layer, n_head_kv, n_ctx, head_dim)
        self.seq_tokens: list[list[int]] = [[] for _ in range(n_seq)]
        """Per sequence, the token ids whose keys/values occupy its positions 0..len-1."""
        bits = np.uint16 if self.k.dtype == np.float16 else self.k.dtype  # numba has no float16 type
        # per (seq, layer): keys and values (n_head_kv, n_ctx, head_dim) as stored and as kernels read them
        self._layers = [[(self.k[s, i], self.v[s, i]) for i in range(hparams.n_layer)] for s in range(n_seq)]
        self._raw = [[(k.view(bits), v.view(bits)) for k, v in layers] for layers in self._layers]

    @property
    def tokens(self) -> list[int]:
        """Token ids of sequence 0 (the only one of a single-sequence cache)."""
        return self.seq_tokens[0]

    @property
    def n_past(self) -> int:
        """Number of positions of sequence 0 filled."""
        return len(self.seq_tokens[0])

    def length(self, seq: int = 0) -> int:
        """Number of positions of sequence ``seq`` filled."""
        return len(self.seq_tokens[seq])

    @property
    def nbytes(self) -> int:
        """Bytes reserved (virtual) by the cache."""
        return self.k.nbytes + self.v.nbytes

    # ------------------------------------------------------------------ planning a batch

    def batch(self, n_tok: int, seq: int = 0) -> KVBatch:
        """Plan ``n_tok`` tokens appended to sequence ``seq``.

        Raises:
            ValueError: they do not fit in the context.
        """
        return self.plan([(seq, n_tok)])

    def plan(self, counts: Sequence[tuple[int, int]]) -> KVBatch:
        """Plan one batch extending several sequences: ``(seq, n_tok)`` pairs in row order, each seq once.

        Raises:
            ValueError: an unknown or repeated sequence, or tokens that do not fit in its context.
        """
        spans, row, seen = [], 0, set()
        for seq, n_tok in counts:
            if not 0 <= seq < self.n_seq or seq in seen:
                raise ValueError(f"sequence {seq} is unknown or repeated in a cache of {self.n_seq} sequences")
            seen.add(seq)
            start = len(self.seq_tokens[seq])
            if start + n_tok > self.n_ctx:
                raise ValueError(f"{start + n_tok} positions do not fit in the context of {self.n_ctx}")
            spans.append(KVSpan(seq, row, start, n_tok))
            row += n_tok
        return KVBatch(tuple(spans))

    # ------------------------------------------------------------------ writing and reading a layer

    def update(self, layer: int, batch: KVBatch, k: np.ndarray, v: np.ndarray) -> None:
        """Store one layer's keys and values of a planned batch.

        Args:
            layer: layer index.
            batch: from :meth:`batch` / :meth:`plan`.
            k: float32 (n_tok, n_head_kv, head_dim) keys after RoPE, rows as in the batch (C-contiguous).
            v: float32 (n_tok, n_head_kv, head_dim) values (C-contiguous).
        """
        k = np.ascontiguousarray(k, dtype=np.float32)  # float32 (n_tok, n_head_kv, hd)
        v = np.ascontiguousarray(v, dtype=np.float32)  # float32 (n_tok, n_head_kv, hd)
        store_spans(*self.raw_all(), layer, *batch.arrays, k, v)

    def keys(self, layer: int, seq: int, end: int) -> np.ndarray:
        """float32 (n_head_kv, end, head_dim) keys of positions 0..end-1 (a view when stored as f32)."""
        return self._layers[seq][layer][0][:, :end].astype(np.float32, copy=False)

    def values(self, layer: int, seq: int, end: int) -> np.ndarray:
        """float32 (n_head_kv, end, head_dim) values of positions 0..end-1 (a view when stored as f32)."""
        return self._layers[seq][layer][1][:, :end].astype(np.float32, copy=False)

    def raw(self, layer: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of one layer of one sequence as compiled kernels read them, without a copy.

        Returns:
            keys, values: contiguous (n_head_kv, n_ctx, head_dim), float32, or for an f16 cache uint16
            holding the float16 bit patterns (numba has no float16 type).
        """
        return self._raw[seq][layer]

    def raw_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of every sequence and layer as compiled kernels read them, without a copy.

        Returns:
            keys, values: contiguous (n_seq, n_layer, n_head_kv, n_ctx, head_dim), float32, or uint16 holding
            the float16 bit patterns of an f16 cache.
        """
        if self.k.dtype == np.float16:
            return self.k.view(np.uint16), self.v.view(np.uint16)
        return self.k, self.v

    # ------------------------------------------------------------------ bookkeeping

    def advance(self, batch: KVBatch, tokens: Sequence[int]) -> None:
        """Record that every layer of ``batch`` has been written: its tokens now occupy their positions."""
        for s in batch.spans:
            self.seq_tokens[s.seq].extend(int(t) for t in tokens[s.rows])

    def common_prefix(self, tokens: Sequence[int], seq: int = 0) -> int:
        """Number of leading ``tokens`` whose keys/values sequence ``seq`` already holds."""
        cached = self.seq_tokens[seq]
        limit = min(len(cached), len(tokens))
        n = 0
        while n < limit and cached[n] == tokens[n]:
            n += 1
        return n

    def truncate(self, n: int, seq: int = 0) -> None:
        """Forget every position of sequence ``seq`` from ``n`` on (overwritten by later tokens)."""
        del self.seq_tokens[seq][n:]

    def clear(self, seq: int | None = None) -> None:
        """Forget sequence ``seq``, or every sequence."""
        for tokens in self.seq_tokens if seq is None else [self.seq_tokens[seq]]:
            tokens.clear()
