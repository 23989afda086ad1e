"""Aggregate generation throughput with 1, 2, 4 and 8 concurrent requests (continuous batching), beside llama.cpp.

Quick check (seconds)::

    PYTHONPATH=src python benchmarks/parallel.py --models smollm2 --runs 1 --gen 8 --counts 1,4

The measurement for the README (on a quiet machine; minutes for the 7B-shaped file)::

    PYTHONPATH=src python benchmarks/parallel.py --models smollm2,7b --runs 3 --write

Each request: a prompt of ``--prompt`` tokens, ``--gen`` tokens generated greedily with end-of-generation banned
(so every request generates exactly ``--gen`` tokens), KV reuse off. ``n_seq=1`` is the single-sequence path
(one request at a time); ``n_seq=max(counts)`` runs N requests together with ``Model.complete_many``. Two
numbers per row:

- ``e2e``: N * gen / wall seconds of the whole call, prompt evaluation included;
- ``tg``: generation alone, N * (gen - 1) / (wall(gen) - wall(1)) (runs generating ``gen`` and 1 token are
  interleaved; their difference is the ``gen - 1`` decoding steps), comparable with llama-batched-bench's S_TG.

llama.cpp: when an interpreter with ``llama_cpp`` is found (``--llama-cpp-python``, else ``$LLAMA_CPP_PYTHON``,
else ``/tmp/llcpp/bin/python`` if it exists, else this one), the same file, counts, lengths and threads are
measured by ``benchmarks/llama_batched.py`` in a subprocess (llama-batched-bench's procedure through the
low-level API: one batch with every prompt, then one batch per step with one token per sequence). Its ``e2e``
counts prompt processing as ours does; its ``S_TG`` is llama-batched-bench's generation speed.

Medians of ``--runs`` rounds, each measuring ours at every count and then llama.cpp's (a fresh subprocess per
round), so that this shared box's drift (10-20% over minutes) hits both alike; the load average is printed
because the machine may be shared. ``--write`` stores
the table in benchmarks/results/parallel.md (otherwise it is only printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import airoboros_ggml as ag
from airoboros_ggml.model import resolve_model_path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "parallel.md"
LLCPP_PYTHON = Path("/tmp/llcpp/bin/python")


def prompts(model: ag.Model, n: int, length: int) -> list[list[int]]:
    """n different prompts of exactly ``length`` token ids (BOS first)."""
    out = []
    for i in range(n):
        text = f"Request {i}: write a short story about a robot who learns to paint. " * (length // 8 + 2)
        ids = model.tokenizer.tokenize(text, add_bos=True)
        assert len(ids) >= length, "prompt text too short for --prompt"
        out.append(ids[:length])
    return out


def eog_ids(model: ag.Model) -> list[int]:
    return [t for t in range(model.n_vocab) if model.tokenizer.is_eog(t)]


def wall(model: ag.Model, batch: list[list[int]], gen: int, banned: dict[int, float]) -> float:
    """Seconds to complete every prompt of ``batch`` with exactly ``gen`` tokens each."""
    t0 = time.perf_counter()
    results = model.complete_many(batch, temperature=0.0, max_tokens=gen, logit_bias=banned)
    seconds = time.perf_counter() - t0
    assert all(r.usage.completion_tokens == gen for r in results)
    return seconds


def ours_round(model: ag.Model, n: int, prompt: int, gen: int) -> tuple[float, float]:
    """Wall seconds of n concurrent requests generating ``gen`` tokens, then 1 token, on ``model``."""
    banned = {t: float("-inf") for t in eog_ids(model)}
    batch = prompts(model, n, prompt)
    return wall(model, batch, gen, banned), wall(model, batch, 1, banned)


def rates(walls: list[tuple[float, float]], n: int, gen: int) -> dict[str, float]:
    """Median e2e and tg tok/s of n requests from their rounds' (gen tokens, 1 token) wall seconds."""
    full, one = [w[0] for w in walls], [w[1] for w in walls]
    e2e = statistics.median(n * gen / s for s in full)
    tg = n * (gen - 1) / max(statistics.median(full) - statistics.median(one), 1e-9) if gen > 1 else float("nan")
    return {"e2e": e2e, "tg": tg}


def find_llama_python(choice: str | None) -> str | None:
    """The interpreter that runs llama_batched.py, or None (``--llama-cpp-python none``, or none can)."""
    from llamacpp_peer import available, interpreter

    if choice == "none":
        return None
    if not choice and not os.environ.get("LLAMA_CPP_PYTHON") and LLCPP_PYTHON.exists():
        choice = str(LLCPP_PYTHON)
    python = interpreter(choice)
    return python if available(python) else None


def llama_cpp(python: str, path: Path, counts: list[int], args: argparse.Namespace) -> dict[int, dict]:
    """llama.cpp's rows by count for one round (empty if it failed; the error is printed)."""
    cmd = [python, str(HERE / "llama_batched.py"), str(path), "--counts", ",".join(map(str, counts)),
           "--prompt", str(args.prompt), "--gen", str(args.gen), "--runs", "1",
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"llama.cpp run failed ({proc.returncode}): {proc.stderr[-2000:]}", file=sys.stderr)
        return {}
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["n"]: r for r in rows}


def model_path(name: str) -> Path:
    """``7b``: the 7B-shaped q4_K_M GGUF of benchmarks/make_models.py (made once, then cached); else a file."""
    if name == "7b":
        from make_models import make

        return make("gguf")
    return resolve_model_path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2", help="comma-separated: smollm2, 7b, or GGUF paths")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--gen", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per request")
    parser.add_argument("--counts", default="1,2,4,8", help="concurrent requests, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="threads, ours and llama.cpp's (default: cores)")
    parser.add_argument("--llama-cpp-python", default=None,
                        help="interpreter with llama_cpp for llama.cpp's numbers ('none': skip them)")
    parser.add_argument("--write", action="store_true", help="store the table in benchmarks/results/parallel.md")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    n_ctx = args.prompt + args.gen + 8
    python = find_llama_python(args.llama_cpp_python)
    load_before = os.getloadavg()[0]
    rows = []
    for name in args.models.split(","):
        path = model_path(name)
        prompt_format = "auto" if name == "smollm2" else "airoboros"
        single = ag.load(path, n_ctx=n_ctx, n_threads=args.threads, kv_reuse=False, prompt_format=prompt_format)
        parallel = ag.load(path, n_ctx=n_ctx, n_seq=max(counts), n_threads=args.threads, kv_reuse=False,
                           prompt_format=prompt_format)
        args.threads = single.n_threads
        for m in (single, parallel):  # compile and warm up
            wall(m, prompts(m, 2 if m is parallel else 1, args.prompt), 4, {})
        # rounds: ours at every count, then llama.cpp's, so that the box's drift hits both alike
        mine: dict[str, list[tuple[float, float]]] = {}
        theirs_rounds: list[dict[int, dict]] = []
        for _ in range(args.runs):
            mine.setdefault("single", []).append(ours_round(single, 1, args.prompt, args.gen))
            for n in counts:
                mine.setdefault(str(n), []).append(ours_round(parallel, n, args.prompt, args.gen))
            if python and path.suffix == ".gguf":
                theirs_rounds.append(llama_cpp(python, path, counts, args))
        theirs = {n: {key: statistics.median(r[n][key] for r in theirs_rounds) for key in ("e2e", "s_tg")}
                  for n in counts if theirs_rounds and all(n in r for r in theirs_rounds)}
        rows.append((name, "n_seq=1 (single path)", 1, rates(mine["single"], 1, args.gen), theirs.get(1)))
        for n in counts:
            rows.append((name, f"n_seq={max(counts)}", n, rates(mine[str(n)], n, args.gen), theirs.get(n)))
        single.close()
        parallel.close()
    load_after = os.getloadavg()[0]
    lines = [
        "# Parallel sequences: aggregate generation throughput",
        "",
        f"prompt {args.prompt} tokens, {args.gen} generated per request (greedy, EOS banned), KV reuse off; "
        f"medians of {args.runs} interleaved rounds (ours, then llama.cpp); {args.threads} threads; "
        f"load average {load_before:.1f} -> "
        f"{load_after:.1f}. tok/s of generated tokens: e2e = prompt time included, tg = decoding steps only "
        "(llama.cpp: llama-batched-bench's S_TG)" + (f"; llama.cpp = llama-cpp-python via {python}" if python else ""),
        "",
        "| model | path | requests | e2e tok/s | tg tok/s | llama.cpp e2e | llama.cpp S_TG | tg vs llama.cpp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label, n, mine, theirs in rows:
        them = (f"{theirs['e2e']:.1f} | {theirs['s_tg']:.1f} | {mine['tg'] / theirs['s_tg']:.2f}x"
                if theirs else "- | - | -")
        lines.append(f"| {name} | {label} | {n} | {mine['e2e']:.1f} | {mine['tg']:.1f} | {them} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
