"""Aggregate generation throughput with 1, 2, 4 and 8 concurrent requests (continuous batching) on SmolLM2.

Usage: PYTHONPATH=src python benchmarks/parallel.py [--model smollm2] [--runs 3] [--gen 32] [--prompt 32]

Each request: a prompt of ``--prompt`` tokens, ``--gen`` tokens generated greedily with end-of-generation
banned (so every request generates exactly ``--gen`` tokens). ``n_seq=1`` is the single-sequence path (one
request); ``n_seq=8`` runs N requests with ``Model.complete_many``. Aggregate tok/s = N * gen / wall seconds,
prompt evaluation included (as llama-batched-bench's "S" column). Medians of ``--runs`` runs; the load
average is printed because the machine is shared. Writes benchmarks/results/parallel.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import airoboros_ggml as ag

RESULTS = Path(__file__).parent / "results" / "parallel.md"


def prompts(model: ag.Model, n: int, length: int) -> list[list[int]]:
    """n different prompts of exactly ``length`` token ids (BOS first)."""
    out = []
    for i in range(n):
        text = f"Request {i}: write a short story about a robot who learns to paint. " * 8
        ids = model.tokenizer.tokenize(text, add_bos=True)
        out.append(ids[:length])
    return out


def run(model: ag.Model, batch: list[list[int]], gen: int) -> float:
    options = {"temperature": 0.0, "max_tokens": gen, "logit_bias": {t: float("-inf") for t in eog_ids(model)}}
    t0 = time.perf_counter()
    results = model.complete_many(batch, **options)
    wall = time.perf_counter() - t0
    assert all(r.usage.completion_tokens == gen for r in results)
    return len(batch) * gen / wall


def eog_ids(model: ag.Model) -> list[int]:
    return [t for t in range(model.n_vocab) if model.tokenizer.is_eog(t)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--counts", default="1,2,4,8")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    n_ctx = args.prompt + args.gen + 8
    single = ag.load(args.model, n_ctx=n_ctx, kv_reuse=False)
    parallel = ag.load(args.model, n_ctx=n_ctx, n_seq=max(counts), kv_reuse=False)
    for m in (single, parallel):  # compile and warm up
        run(m, prompts(m, 2 if m is parallel else 1, args.prompt), 4)
    rows = []
    load_before = os.getloadavg()[0]
    base = statistics.median(run(single, prompts(single, 1, args.prompt), args.gen) for _ in range(args.runs))
    rows.append(("n_seq=1 (single path)", 1, base))
    for n in counts:
        speeds = [run(parallel, prompts(parallel, n, args.prompt), args.gen) for _ in range(args.runs)]
        rows.append((f"n_seq={max(counts)}", n, statistics.median(speeds)))
    load_after = os.getloadavg()[0]
    lines = [
        f"# Parallel sequences: aggregate generation throughput ({args.model})",
        "",
        f"prompt {args.prompt} tokens, {args.gen} generated per request (greedy, EOS banned), prompt time "
        f"included; medians of {args.runs} runs; {single.n_threads} threads; load average "
        f"{load_before:.1f} -> {load_after:.1f} (shared machine)",
        "",
        "| model | requests | aggregate tok/s | vs 1 request |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {n} | {speed:.1f} | {speed / base:.2f}x |" for name, n, speed in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
