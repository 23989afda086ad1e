"""llama.cpp's batched decoding, measured as ``llama-batched-bench`` measures it (driven through llama-cpp-python).

Run by ``benchmarks/parallel.py`` in a subprocess with an interpreter that has ``llama_cpp`` (it imports nothing
from airoboros_ggml), or by hand::

    /tmp/llcpp/bin/python benchmarks/llama_batched.py MODEL.gguf --counts 1,2,4,8 --prompt 32 --gen 32

For each count N (``-npl`` of llama-batched-bench, ``is_pp_shared`` off): the KV cache is cleared, one batch
holding N prompts of ``--prompt`` random tokens (sequence ids 0..N-1, logits of each prompt's last token) is
decoded, then ``--gen`` batches of N tokens, one per sequence, each with its logits (the tokens are random, as
in llama-batched-bench: no sampling). Prints one JSON object per line: ``n``, ``pp_s`` and ``tg_s`` (seconds),
``s_tg`` = N * gen / tg_s (llama-batched-bench's S_TG), ``e2e`` = N * gen / (pp_s + tg_s) (generated tokens per
second with prompt processing included, the measure ``parallel.py`` takes of airoboros-ggml), medians of
``--runs`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import statistics
import time

import llama_cpp as L


def _quiet() -> None:
    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def log(level, text, user_data):  # noqa: ARG001 - llama.cpp's log callback signature
        return None

    L.llama_log_set(log, ctypes.c_void_p(0))
    _quiet.keep = log  # the callback must outlive this function


def _add(batch, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits


def measure(ctx, n_vocab: int, n: int, prompt: int, gen: int, rng: random.Random) -> tuple[float, float]:
    """One run at N sequences: seconds of the prompt batch and of the ``gen`` decoding batches."""
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    batch = L.llama_batch_init(max(n * prompt, n), 0, n)
    try:
        batch.n_tokens = n * prompt
        for s in range(n):
            for j in range(prompt):
                _add(batch, s * prompt + j, rng.randrange(n_vocab), j, s, j == prompt - 1)
        t0 = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed on the prompt batch")
        L.llama_synchronize(ctx)
        t1 = time.perf_counter()
        for step in range(gen):
            batch.n_tokens = n
            for s in range(n):
                _add(batch, s, rng.randrange(n_vocab), prompt + step, s, True)
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed on a decoding batch")
        L.llama_synchronize(ctx)
        t2 = time.perf_counter()
    finally:
        L.llama_batch_free(batch)
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="GGUF file")
    parser.add_argument("--counts", default="1,2,4,8", help="concurrent sequences, comma-separated")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per sequence")
    parser.add_argument("--gen", type=int, default=32, help="generated tokens per sequence")
    parser.add_argument("--runs", type=int, default=3, help="runs per count (median)")
    parser.add_argument("--threads", type=int, default=2, help="threads (generation and batch)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    _quiet()
    L.llama_backend_init()
    model = L.llama_model_load_from_file(args.model.encode(), L.llama_model_default_params())
    if model is None:
        raise SystemExit(f"llama.cpp cannot load {args.model}")
    params = L.llama_context_default_params()
    params.n_ctx = max(counts) * (args.prompt + args.gen)
    params.n_batch = params.n_ubatch = max(max(counts) * args.prompt, 32)
    params.n_seq_max = max(counts)
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = args.threads
    ctx = L.llama_init_from_model(model, params)
    if ctx is None:
        raise SystemExit("llama.cpp cannot create a context")
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    rng = random.Random(0)
    measure(ctx, n_vocab, 1, args.prompt, 2, rng)  # warm-up
    for n in counts:
        runs = [measure(ctx, n_vocab, n, args.prompt, args.gen, rng) for _ in range(args.runs)]
        pp_s = statistics.median(r[0] for r in runs)
        tg_s = statistics.median(r[1] for r in runs)
        e2e = statistics.median(n * args.gen / (p + t) for p, t in runs)
        row = {"n": n, "pp_s": pp_s, "tg_s": tg_s, "s_tg": n * args.gen / tg_s, "e2e": e2e,
               "version": L.__version__, "threads": args.threads}
        print(json.dumps(row), flush=True)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
