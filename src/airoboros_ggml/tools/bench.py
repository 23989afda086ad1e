"""The ``airoboros-ggml bench`` command: prompt-processing and generation speed, time to first token, RSS.

What is measured (medians over ``--reps``; the raw runs are in the JSON output):

- ``prompt_tok_s``: ``p`` random token ids evaluated from an empty KV cache (the model is loaded with
  ``kv_reuse=False``), ``p / Timings.prompt_s``.
- ``gen_tok_s``: greedy decoding of ``n`` tokens after an 8-token prompt, with every end-of-generation token
  banned so that exactly ``n`` come out. ``Timings.generation_s`` covers ``n`` samplings and ``n - 1``
  forward passes (the last token is never evaluated), so the rate is ``(n - 1) / generation_s``: the
  time of one decode step (forward pass + sampling), as llama.cpp's "eval time" reports it.
- ``gen_long_tok_s``: the same rate for ``n`` tokens generated right after the ``p``-token prompt of the
  prompt-processing runs (decoding with ``p`` cached positions: attention over a long cache shows here).
- ``ttft_s``: wall time of ``complete(16 random ids, max_tokens=1)`` in the warm process (prompt + first
  sampling).
- ``process_ttft_s``: seconds from this process's start (``/proc/self/stat``; Linux only) to the first token
  of the very first 16-token prompt: interpreter start-up, imports, loading the file, numba loading its
  on-disk cache (or compiling, in a first process) and the evaluation itself. Run ``bench`` twice and read
  the second process's figure for the "warm second process" time.
- ``peak_rss_bytes``: ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the run. The weights are memory
  mapped, and Linux counts every mapped file page a process has touched in its RSS, so after a full
  forward pass this is ``≈ file size + KV cache + interpreter/numba/scratch``; it is the peak over every
  measurement (the longest prompt dominates the scratch buffers). A fresh process per invocation keeps it
  meaningful: do not compare it across measurements made in one long-lived process. ``rss_now`` splits
  the resident memory at the end into anonymous (heap, KV cache, scratch) and file-backed (mapped weights,
  shared libraries) bytes.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TTFT_PROMPT = 16
GEN_PROMPT = 8
RSS_SLACK_BYTES = 300 * 1024 * 1024


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None where that is unavailable."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 "starttime", counted after the ")" of the command name
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def rss_breakdown() -> dict[str, int]:
    """Resident memory now (Linux ``/proc/self/status``): anonymous, file-backed and shmem bytes."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    out[key.lower()] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def run_bench(
    model_path: str | os.PathLike,
    n_prompt: int = 512,
    n_gen: int = 32,
    n_threads: int | None = None,
    n_ctx: int | None = None,
    reps: int = 3,
    seed: int = 0,
    n_batch: int = 512,
    **load_options: Any,
) -> dict[str, Any]:
    """Run every measurement on one model and return a JSON-able report.

    Args:
        model_path: Model file (GGML v3 or GGUF), or ``"smollm2"``.
        n_prompt: Prompt length for the prompt-processing measurement (0 skips it).
        n_gen: Tokens to generate for the generation measurement (0 skips it; at least 2 otherwise).
        n_threads: Threads (default: the loader's default, physical cores).
        n_ctx: Context size (default ``max(600, n_prompt + n_gen, GEN_PROMPT + n_gen)``; 600 is the issue's
            reference point for the RSS budget).
        reps: Repetitions of each measurement; medians are reported.
        seed: Seed of the random token ids.
        n_batch: Tokens per forward batch during prompt processing.
        **load_options: Other :class:`~airoboros_ggml.runtime.options.LoadOptions` fields (``rope_freq_base``,
            ``rope_freq_scale``, ``rms_norm_eps``, ``exact_activations``, ...), as the CLI's load flags give them.

    Returns:
        A dict with the settings, the medians (``prompt_tok_s``, ``gen_tok_s``, ``gen_long_tok_s``, ``ttft_s``),
        the process
        timings (``process_ttft_s``, ``load_s``), memory (``peak_rss_bytes``, ``file_bytes``,
        ``kv_cache_bytes``, ``rss_budget_bytes``) and the raw per-rep values under ``runs``.
    """
    from ..model import load

    if n_gen == 1 or n_gen < 0 or n_prompt < 0 or reps < 1:
        raise ValueError("need n_gen == 0 or >= 2, n_prompt >= 0 and reps >= 1")
    need = max(n_prompt + max(n_gen, 1), GEN_PROMPT + n_gen, TTFT_PROMPT + 1)
    n_ctx = n_ctx or max(600, need)
    if need > n_ctx:
        raise ValueError(f"context {n_ctx} too small for a {n_prompt}-token prompt or {n_gen} new tokens")
    options: dict[str, Any] = {"kv_reuse": False, **load_options, "n_ctx": n_ctx, "n_batch": n_batch}
    if n_threads:
        options["n_threads"] = n_threads
    t0 = time.perf_counter()
    model = load(model_path, **options)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    n_vocab = model.n_vocab
    greedy = {"temperature": 0.0, "repeat_penalty": 1.0}
    banned = {int(t): float("-inf") for t in range(n_vocab) if model.tokenizer.is_eog(t)}

    def random_ids(n: int) -> list[int]:
        return [int(t) for t in rng.integers(3, n_vocab, size=n)]

    try:
        # the first call of the process: loads (or compiles) the numba kernels
        t0 = time.perf_counter()
        model.complete(random_ids(TTFT_PROMPT), max_tokens=1, **greedy)
        first_call_s = time.perf_counter() - t0
        process_ttft = process_age_s()
        runs: dict[str, list[float]] = {"ttft_s": [], "prompt_tok_s": [], "gen_tok_s": [], "gen_long_tok_s": []}
        for _ in range(reps):
            t0 = time.perf_counter()
            model.complete(random_ids(TTFT_PROMPT), max_tokens=1, **greedy)
            runs["ttft_s"].append(time.perf_counter() - t0)
        for _ in range(reps if n_prompt else 0):
            n_after = max(n_gen, 1)  # tokens generated after the long prompt
            timings = model.complete(random_ids(n_prompt), max_tokens=n_after, logit_bias=banned, **greedy).timings
            runs["prompt_tok_s"].append(timings.prompt_evaluated / timings.prompt_s)
            if n_after > 1:
                runs["gen_long_tok_s"].append((timings.generated - 1) / timings.generation_s)
        for _ in range(reps if n_gen else 0):
            done = model.complete(random_ids(GEN_PROMPT), max_tokens=n_gen, logit_bias=banned, **greedy)
            timings = done.timings
            runs["gen_tok_s"].append((timings.generated - 1) / timings.generation_s)
        kv_bytes = int(model._cache.nbytes) if hasattr(model._cache, "nbytes") else 0
        file_bytes = Path(model.file.path).stat().st_size
        report = {
            "model": str(model.file.path),
            "format": model.file.format,
            "n_threads": model.n_threads,
            "n_ctx": n_ctx,
            "n_batch": n_batch,
            "n_prompt": n_prompt,
            "n_gen": n_gen,
            "reps": reps,
            "prompt_tok_s": _median(runs["prompt_tok_s"]),
            "gen_tok_s": _median(runs["gen_tok_s"]),
            "gen_long_tok_s": _median(runs["gen_long_tok_s"]),
            "ttft_s": _median(runs["ttft_s"]),
            "process_ttft_s": process_ttft,
            "first_call_s": first_call_s,
            "load_s": load_s,
            "peak_rss_bytes": peak_rss_bytes(),
            "rss_now": rss_breakdown(),
            "file_bytes": file_bytes,
            "kv_cache_bytes": kv_bytes,
            "rss_budget_bytes": file_bytes + kv_bytes + RSS_SLACK_BYTES,
            "machine": machine_description(),
            "runs": runs,
        }
    finally:
        model.close()
    return report


def machine_description() -> str:
    """CPU model, logical CPU count, memory and Python version, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    py = platform.python_version()
    return f"{cpu}, {os.cpu_count()} logical CPUs{mem}, Python {py}, {platform.system()}"


def render(report: dict[str, Any]) -> str:
    """A plain-text table of a :func:`run_bench` report."""
    r = report
    runs = r["runs"]

    def spread(key: str, fmt: str) -> str:
        values = runs.get(key) or []
        return f"{min(values):{fmt}} .. {max(values):{fmt}}" if values else ""

    mb = 1024 * 1024
    rows = [
        (f"prompt processing ({r['n_prompt']} tok)", f"{r['prompt_tok_s']:.2f} tok/s",
         spread("prompt_tok_s", ".2f")),
        (f"generation ({r['n_gen']} tok)", f"{r['gen_tok_s']:.2f} tok/s", spread("gen_tok_s", ".2f")),
        (f"generation after the {r['n_prompt']}-token prompt", f"{r['gen_long_tok_s']:.2f} tok/s",
         spread("gen_long_tok_s", ".2f")),
        (f"time to first token ({TTFT_PROMPT} tok, warm)", f"{r['ttft_s']:.3f} s", spread("ttft_s", ".3f")),
        ("process start -> first token",
         "n/a" if r["process_ttft_s"] is None else f"{r['process_ttft_s']:.2f} s",
         f"first call {r['first_call_s']:.2f} s"),
        ("load", f"{r['load_s']:.2f} s", ""),
        ("peak RSS", f"{r['peak_rss_bytes'] / mb:.0f} MB",
         f"budget {r['rss_budget_bytes'] / mb:.0f} MB = file {r['file_bytes'] / mb:.0f} + KV "
         f"{r['kv_cache_bytes'] / mb:.0f} + 300"),
    ]
    width = max(len(a) for a, _, _ in rows)
    lines = [
        f"model: {r['model']} ({r['format']}), threads {r['n_threads']}, n_ctx {r['n_ctx']}, "
        f"n_batch {r['n_batch']}, medians of {r['reps']}",
        f"machine: {r['machine']}",
        f"{'test':<{width}}  {'median':>14}  min .. max",
    ]
    lines += [f"{a:<{width}}  {b:>14}  {c}" for a, b, c in rows]
    return "\n".join(lines)
