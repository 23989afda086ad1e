"""Cost of constrained generation: decode speed with and without a JSON Schema, and the mask time per token.

Usage: PYTHONPATH=src python benchmarks/constrain.py [--reps 3] [--max-tokens 64]

1. SmolLM2 chat: decode tokens/s of the same prompts unconstrained and with a JSON Schema (median of
   ``--reps`` seeds each; the constrained runs end when the object is complete, so the token counts differ).
2. Mask cost per token: the constrained outputs are replayed through a fresh grammar processor (advance the
   matcher, compute the bitmask, apply it to float32 logits) on SmolLM2's vocabulary (49,152) and on the
   Llama-2 vocabulary (32,000), timing only the processor. Divided by the decode time per token of a quiet
   machine (``--ms-per-token-smollm2`` and ``--ms-per-token-7b``, from benchmarks/results/speed.md) it gives
   the overhead; on a loaded machine the mask time is an upper bound.
Also a GBNF grammar (llama.cpp's json.gbnf), which runs at parser level (see ``constrain.grammars``).
Writes benchmarks/results/constrain.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import airoboros_ggml
from airoboros_ggml.constrain import GrammarLogitsProcessor, constraint_grammar
from airoboros_ggml.model import resolve_model_path
from airoboros_ggml.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "species": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "friends": {"type": "array", "items": {"type": "string"}},
        "owner": {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}}},
    },
    "required": ["name", "species", "age", "friends", "owner"],
}
PROMPT = [{"role": "user", "content": "Describe a pet, its friends and its owner in JSON."}]


def decode_speeds(model: airoboros_ggml.Model, reps: int, max_tokens: int) -> tuple[float, float, float, list[str]]:
    """Decode tokens/s with :data:`SCHEMA` and without, and the grammar processor's share of generation time.

    For each seed the constrained run goes first; the unconstrained run then generates as many tokens (so
    both decode at the same context lengths), right after it, so that load drifts hit both alike. Returns
    the medians of both speeds, the processor's total share of the constrained generation time (measured
    by timing every processor call), and the constrained texts.
    """
    spent = []
    call = GrammarLogitsProcessor.__call__

    def timed(self, tokens, logits):  # instrumentation: time every call of the grammar processor
        start = time.perf_counter()
        out = call(self, tokens, logits)
        spent.append(time.perf_counter() - start)
        return out

    free, constrained, texts, generation_s = [], [], [], 0.0
    GrammarLogitsProcessor.__call__ = timed
    try:
        for seed in range(reps):
            out = model.chat(PROMPT, temperature=1.0, seed=seed, max_tokens=max_tokens, json_schema=SCHEMA)
            constrained.append(out.timings.generation_tokens_per_s)
            generation_s += out.timings.generation_s
            texts.append(out.text)
            out = model.chat(PROMPT, temperature=1.0, seed=seed, max_tokens=out.usage.completion_tokens)
            free.append(out.timings.generation_tokens_per_s)
    finally:
        GrammarLogitsProcessor.__call__ = call
    return statistics.median(free), statistics.median(constrained), sum(spent) / generation_s, texts


def mask_ms_per_token(tokenizer: Tokenizer, grammar: str, texts: list[str]) -> tuple[float, float]:
    """Median and mean milliseconds the grammar processor takes per token, replaying ``texts`` (valid outputs).

    The median is robust to the preemptions of a shared machine; the mean includes the rare expensive
    steps (lexer states built on first sight, GBNF steps where most of the vocabulary is allowed).
    """
    times = []
    n_vocab = tokenizer.n_vocab
    logits = np.zeros(n_vocab, dtype=np.float32)  # float32 (n_vocab,)
    for text in texts:
        processor = GrammarLogitsProcessor(tokenizer, grammar, n_vocab)
        tokens = [tokenizer.bos_id or 0]
        for token in [*tokenizer.encode_exact(text), None]:
            logits[:] = 0.0
            start = time.perf_counter()
            processor(tokens, logits)
            times.append(time.perf_counter() - start)
            if token is not None:
                tokens.append(token)
    return 1e3 * statistics.median(times), 1e3 * statistics.fmean(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--ms-per-token-7b", type=float, default=1e3 / 6.74,
                   help="7B q4_K_M decode time per token (default: 6.74 tok/s, benchmarks/results/speed.md)")
    p.add_argument("--ms-per-token-smollm2", type=float, default=1e3 / 91.3,
                   help="SmolLM2 decode time per token (default: 91.3 tok/s, benchmarks/results/speed.md)")
    p.add_argument("--mask-runs", type=int, default=3, help="replays per row; the fastest is reported")
    p.add_argument("--texts", type=Path, default=None,
                   help="skip the decode runs: replay the JSON outputs stored in this file (one per line)")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "constrain.md")
    args = p.parse_args(argv)

    load_before = os.getloadavg()[0]
    schema_grammar = constraint_grammar(json_schema=SCHEMA)
    if args.texts is None:
        model = airoboros_ggml.load("smollm2", prompt_format="auto")
        model.chat(PROMPT, max_tokens=4)  # warm-up (kernels compiled, caches filled)
        model.chat(PROMPT, max_tokens=16, json_schema=SCHEMA)  # warm-up: llguidance tokenizer and lexer built
        free, constrained, share, texts = decode_speeds(model, args.reps, args.max_tokens)
        decode = (f"SmolLM2 chat decode in this run (medians): {free:.1f} tok/s unconstrained, {constrained:.1f} "
                  f"tok/s with a JSON Schema ({100 * (1 - constrained / free):+.1f}% slower); the grammar processor "
                  f"took {100 * share:.2f}% of the constrained generation time")
    else:
        texts, decode = args.texts.read_text().splitlines(), "No decode runs (--texts)"
    valid = [t for t in texts if _is_json(t)]
    smollm2 = Tokenizer.from_file(resolve_model_path("smollm2"))
    llama = Tokenizer.from_file(REPO / "tests" / "data" / "ggml-vocab-llama-spm.gguf")
    gbnf = constraint_grammar(grammar=(REPO / "tests" / "data" / "grammars" / "json.gbnf").read_text())
    rows = []
    first_s: dict[str, float] = {}
    for label, tokenizer, ms_token in (("SmolLM2-135M Q4_1", smollm2, args.ms_per_token_smollm2),
                                       ("Llama-2 7B q4_K_M", llama, args.ms_per_token_7b)):
        for kind, grammar in (("JSON Schema", schema_grammar), ("GBNF json.gbnf", gbnf)):
            start = time.perf_counter()
            mask_ms_per_token(tokenizer, grammar, valid[:1])  # first use: llguidance tokenizer, lexer states
            first_s[label] = first_s.get(label, time.perf_counter() - start)
            median_ms, mean_ms = min(mask_ms_per_token(tokenizer, grammar, valid) for _ in range(args.mask_runs))
            rows.append((label, kind, median_ms, mean_ms, ms_token, 100 * median_ms / ms_token))
    lines = [
        "# Constrained generation cost",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or platform.platform()}; "
        f"{args.reps} seeds, temperature 1.0, up to {args.max_tokens} tokens; 1-minute load "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} (2 cores shared: absolute speeds are only comparable "
        "within this run).",
        "",
        f"{decode}; {len(valid)}/{len(texts)} outputs complete JSON, replayed below.",
        "",
        "| model (vocabulary) | constraint | mask ms/token, median (mean) | decode ms/token (quiet) | overhead |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c:.3f} ({d:.3f}) | {e:.1f} | {f:.2f}% |" for a, b, c, d, e, f in rows],
        "",
        "First constrained use per vocabulary (building llguidance's tokenizer, then one replay): "
        + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in first_s.items()) + ".",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
