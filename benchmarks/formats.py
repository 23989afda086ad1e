"""GGML v3 vs GGUF files of the same weights, alternated in ONE process: do the two formats run equally fast?

``speed.py`` measures each file in a fresh process per round; on a shared machine whose speed drifts by
10-20% over minutes, its per-file medians have come out 1-10% apart, in either direction, from run to run.
Here both 7B-shaped q4_K_M files (``make_models.py``) are loaded side by side and measured in turns (the
order flips every round), so that the machine's drift hits both alike: prompt processing (``--n-prompt``
random tokens) and generation (``--n-gen`` tokens after an 8-token prompt), greedy, medians over the rounds.
Both files are first dropped from the page cache and read back in order (``make_models.settle_page_cache``).

Usage::

    PYTHONPATH=src python benchmarks/formats.py [--rounds 5] [--n-prompt 512] [--n-gen 16] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

import airoboros_ggml
from airoboros_ggml.tools.bench import machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "formats.md"


def measure(model: Any, rng: np.random.Generator, n_prompt: int, n_gen: int) -> tuple[float, float]:
    """(prompt tok/s, generation tok/s) of one turn: a fresh prompt each time (no KV reuse)."""
    ids = lambda n: [int(t) for t in rng.integers(3, model.n_vocab, size=n)]  # noqa: E731
    banned = {int(t): float("-inf") for t in range(model.n_vocab) if model.tokenizer.is_eog(t)}
    greedy = {"temperature": 0.0, "repeat_penalty": 1.0, "logit_bias": banned}
    prompt = model.complete(ids(n_prompt), max_tokens=1, **greedy).timings
    gen = model.complete(ids(8), max_tokens=n_gen, **greedy).timings
    return prompt.prompt_evaluated / prompt.prompt_s, (gen.generated - 1) / gen.generation_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_models import make, settle_page_cache

    paths = {fmt: make(fmt) for fmt in ("ggml", "gguf")}
    for path in paths.values():
        settle_page_cache(path)
    models = {fmt: airoboros_ggml.load(path, n_threads=args.threads, n_ctx=max(600, args.n_prompt + 8),
                                       kv_reuse=False) for fmt, path in paths.items()}
    rng = np.random.default_rng(0)
    for model in models.values():  # compile / load the kernels, touch every weight once
        measure(model, rng, 32, 2)
    runs: dict[str, dict[str, list[float]]] = {fmt: {"prompt": [], "gen": []} for fmt in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for fmt in order:
            prompt, gen = measure(models[fmt], rng, args.n_prompt, args.n_gen)
            runs[fmt]["prompt"].append(prompt)
            runs[fmt]["gen"].append(gen)
            print(f"round {r + 1} {fmt}: prompt {prompt:.2f} tok/s, generation {gen:.2f} tok/s", flush=True)
    med = {fmt: {k: statistics.median(v) for k, v in m.items()} for fmt, m in runs.items()}
    lines = [
        "# GGML v3 vs GGUF in one process",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/formats.py`: both 7B-shaped "
        f"q4_K_M files loaded side by side, {args.rounds} rounds alternating them (order flipped each round), "
        f"{args.threads} threads, prompt {args.n_prompt} tokens, generation {args.n_gen} tokens; medians.",
        "",
        f"Machine: {machine_description()}.",
        "",
        "| measurement | GGML v3 (.bin) | GGUF | GGUF / GGML |",
        "|---|---|---|---|",
    ]
    for key, title in (("prompt", f"prompt processing, {args.n_prompt} tokens (tok/s)"),
                       ("gen", f"generation, {args.n_gen} tokens (tok/s)")):
        g, u = med["ggml"][key], med["gguf"][key]
        lines.append(f"| {title} | {g:.2f} | {u:.2f} | {u / g:.3f} |")
    lines += ["", "Per round (tok/s):", ""]
    for fmt, m in runs.items():
        for key, values in m.items():
            lines.append(f"- {fmt} {key}: " + " / ".join(f"{v:.2f}" for v in values))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        RESULTS.write_text(text)
    for model in models.values():
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
