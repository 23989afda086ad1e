"""Speed and memory of airoboros-ggml on a 7B-shaped q4_K_M model and SmolLM2, vs ctransformers (issue 6).

Every measurement runs in a fresh subprocess (``airoboros-ggml bench --json``), so start-up and peak RSS are
real. Steps:

1. create or reuse the 7B-shaped q4_K_M files (GGML v3 and GGUF; ``benchmarks/make_models.py``);
2. per file: prompt processing at 512 tokens, generation (after an 8-token prompt and right after the 512-token
   one), peak RSS at n_ctx 600, then a SECOND process
   (numba cache warm) for the time from process start to the first token of a 16-token prompt;
3. when ``ctransformers`` is importable, the same measurements on the GGML v3 file (timed here around its
   ``eval``/``sample`` calls, batch size 512, in its own subprocess), with ratios;
4. SmolLM2-135M Q4_1 (``smollm2``): prompt 512 and generation;
5. a markdown table with the machine description, the load average around each measurement and the
   targets -> ``benchmarks/results/speed.md``.

The machine is shared: before each measurement the script waits (up to ``--max-wait`` seconds) for the
1-minute load average to fall below ``--max-load`` and records the load it ran under.

Usage::

    PYTHONPATH=src python benchmarks/speed.py [--reps 3] [--n-gen 16] [--formats ggml,gguf] [--no-smollm2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("speed")

MB = 1024 * 1024
TARGETS = {
    "7b_gen_tok_s": 3.0,
    "7b_prompt_tok_s": 9.0,
    "7b_process_ttft_s": 5.0,
    "smollm2_gen_tok_s": 50.0,
    "smollm2_prompt_tok_s": 170.0,
}
REFERENCE = "llama.cpp here (docs/performance.md): 7B prompt 7.6 tok/s, generation 2.5-3.0 tok/s, RSS 7.2 GB; " \
    "SmolLM2 prompt 169, generation 65 tok/s"


def loadavg() -> float:
    """The 1-minute load average (0.0 where unavailable)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Wait until the 1-minute load is below ``max_load`` or ``max_wait`` seconds passed; return the load."""
    deadline = time.monotonic() + max_wait
    load = loadavg()
    while load > max_load and time.monotonic() < deadline:
        log.info("load average %.2f > %.2f: waiting", load, max_load)
        time.sleep(min(20.0, max(1.0, deadline - time.monotonic())))
        load = loadavg()
    return load


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run a command that prints one JSON document on stdout and return it."""
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def bench(model: str, args: argparse.Namespace, n_prompt: int, n_gen: int, reps: int) -> dict[str, Any]:
    """``airoboros-ggml bench --json`` in a fresh process, with the load average before and after."""
    before = wait_for_quiet(args.max_load, args.max_wait)
    cmd = [sys.executable, "-m", "airoboros_ggml", "bench", "-m", model, "-p", str(n_prompt),
           "-n", str(n_gen), "-t", str(args.threads), "-c", str(args.ctx), "--reps", str(reps), "--json"]
    report = run_json(cmd, timeout=args.timeout)
    report["load"] = (before, loadavg())
    _log_result(report)
    return report


def _log_result(report: dict[str, Any]) -> None:
    keys = ("prompt_tok_s", "gen_tok_s", "gen_long_tok_s", "ttft_s", "process_ttft_s", "peak_rss_bytes", "load")
    log.info("result %s: %s", report.get("engine", "airoboros-ggml"), {k: report.get(k) for k in keys})


# ----------------------------------------------------------------------------------- ctransformers peer


def ctransformers_worker(path: str, n_prompt: int, n_gen: int, threads: int, ctx: int, reps: int) -> dict:
    """Measure ctransformers like ``airoboros-ggml bench`` does (runs inside its own subprocess)."""
    import warnings

    import numpy as np

    from airoboros_ggml.tools.bench import GEN_PROMPT, TTFT_PROMPT, peak_rss_bytes, process_age_s

    warnings.simplefilter("ignore")
    from ctransformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    llm = AutoModelForCausalLM.from_pretrained(
        path, model_type="llama", context_length=ctx, threads=threads, batch_size=512, gpu_layers=0
    )
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    greedy = {"top_k": 1, "temperature": 0.0, "repetition_penalty": 1.0}

    n_vocab = llm.vocab_size

    def ids(n: int) -> list[int]:
        return [int(t) for t in rng.integers(3, n_vocab, size=n)]

    def first_token(tokens: list[int]) -> float:
        llm.reset()
        t = time.perf_counter()
        llm.eval(tokens)
        llm.sample(**greedy)
        return time.perf_counter() - t

    first_call_s = first_token(ids(TTFT_PROMPT))
    process_ttft = process_age_s()
    runs: dict[str, list[float]] = {"ttft_s": [], "prompt_tok_s": [], "gen_tok_s": [], "gen_long_tok_s": []}

    def generate(n: int) -> float:
        """Decode rate of n greedy tokens after what was evaluated: n samplings and n - 1 evaluations."""
        t = time.perf_counter()
        for i in range(n):
            token = llm.sample(**greedy)
            if i < n - 1:
                llm.eval([token])
        return (n - 1) / (time.perf_counter() - t)

    for _ in range(reps):
        runs["ttft_s"].append(first_token(ids(TTFT_PROMPT)))
    for _ in range(reps if n_prompt else 0):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids(n_prompt))
        runs["prompt_tok_s"].append(n_prompt / (time.perf_counter() - t))
        if n_gen:  # as airoboros-ggml bench: generation right after the long prompt
            runs["gen_long_tok_s"].append(generate(n_gen))
    for _ in range(reps if n_gen else 0):
        llm.reset()
        llm.eval(ids(GEN_PROMPT))
        runs["gen_tok_s"].append(generate(n_gen))
    med = {k: float(statistics.median(v)) if v else float("nan") for k, v in runs.items()}
    return {
        "engine": "ctransformers 0.2.27", "model": path, "n_threads": threads, "n_ctx": ctx, "reps": reps,
        "n_prompt": n_prompt, "n_gen": n_gen, **med, "process_ttft_s": process_ttft,
        "first_call_s": first_call_s, "load_s": load_s, "peak_rss_bytes": peak_rss_bytes(), "runs": runs,
    }


def ctransformers_available() -> bool:
    """Whether ``ctransformers`` can be imported in a subprocess (its import loads a native library)."""
    proc = subprocess.run([sys.executable, "-c", "import ctransformers"], capture_output=True, env=_env())
    return proc.returncode == 0


def bench_ctransformers(path: Path, args: argparse.Namespace, n_prompt: int, reps: int) -> dict[str, Any]:
    """The ctransformers measurement in a fresh subprocess."""
    before = wait_for_quiet(args.max_load, args.max_wait)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--ctransformers-worker", str(path),
           "--n-prompt", str(n_prompt), "--n-gen", str(args.n_gen), "--threads", str(args.threads),
           "--ctx", str(args.ctx), "--reps", str(reps)]
    report = run_json(cmd, timeout=args.timeout)
    report["load"] = (before, loadavg())
    _log_result(report)
    return report


# ----------------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return format(value, spec)


def _load(r: dict[str, Any] | None) -> str:
    return "—" if not r else f"{r['load'][0]:.2f} → {r['load'][1]:.2f}"


def render_markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The results table (markdown)."""
    ours = results["ours"]  # fmt -> bench report
    ttft = results["ttft"]  # fmt -> bench report of the second process
    peer = results.get("ctransformers")
    smol = results.get("smollm2")
    formats = list(ours)
    any_r = next(iter(ours.values()), None) or smol
    lines = [
        "# Speed and memory (issue 6)",
        "",
        f"Measured {results['date']} at commit `{results['commit']}` by `benchmarks/speed.py` "
        f"(medians of {args.reps} runs, {args.threads} threads, n_ctx {args.ctx}).",
        "",
        f"Machine: {any_r['machine'] if any_r else '?'}.",
        "",
        "7B-shaped Llama-2 q4_K_M files (random valid blocks, llama.cpp's q4_K_M type mix; "
        + ", ".join(f"{f}: {ours[f]['file_bytes']:,} bytes" for f in formats) + ").",
        "",
    ]
    head = ["measurement", "target"] + [f"airoboros-ggml ({f})" for f in formats]
    if peer:
        head += ["ctransformers 0.2.27 (ggml)", "ours / ctransformers"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = ours.get("ggml")

    def row(name: str, target: str, key: str, spec: str, src: dict[str, Any], scale: float = 1.0,
            higher: bool = True) -> None:
        values = [(src.get(f) or {}).get(key) for f in formats]
        cells = [name, target] + [_fmt(v and v / scale, spec) for v in values]
        if peer:
            theirs = peer.get(key)
            cells.append(_fmt(theirs and theirs / scale, spec))
            mine = (src.get("ggml") or {}).get(key)
            ratio = mine / theirs if (mine and theirs) else None
            if ratio is not None and not higher:
                ratio = 1.0 / ratio
            cells.append(_fmt(ratio, ".2f") + ("×" if ratio else ""))
        lines.append("| " + " | ".join(cells) + " |")

    row(f"prompt processing, {args.n_prompt} tokens (tok/s)", f"≥ {TARGETS['7b_prompt_tok_s']}",
        "prompt_tok_s", ".2f", ours)
    row(f"generation, {args.n_gen} tokens (tok/s)", f"≥ {TARGETS['7b_gen_tok_s']}", "gen_tok_s", ".2f",
        ours)
    row(f"generation after the {args.n_prompt}-token prompt, {args.n_gen} tokens (tok/s)", "—",
        "gen_long_tok_s", ".2f", ours)
    budget = base["rss_budget_bytes"] / MB if base else None
    row("peak RSS (MB)", f"≤ {_fmt(budget, '.0f')} (file + KV + 300)", "peak_rss_bytes", ".0f", ours, MB,
        higher=False)
    row("time to first token, 16 tokens, warm process (s)", "—", "ttft_s", ".2f", ours, higher=False)
    row("process start → first token, 16 tokens, second process (s)", f"≤ {TARGETS['7b_process_ttft_s']}",
        "process_ttft_s", ".2f", ttft, higher=False)
    row("load (s)", "—", "load_s", ".2f", ours, higher=False)
    lines.append("| load average (1 min) before → after | — | "
                 + " | ".join(_load(ours[f]) for f in formats)
                 + (f" | {_load(peer)} | |" if peer else " |"))
    lines += [""]
    if base:
        lines.append(
            f"KV cache: {base['kv_cache_bytes'] / MB:.0f} MB (f16 keys and values at n_ctx {args.ctx}, as "
            "llama.cpp). Peak RSS counts every memory-mapped page of the file that was touched, so it is "
            "≈ file + KV + interpreter/numba/scratch."
        )
        lines.append("")
    if not peer:
        lines += ["ctransformers not installed (`pip install ctransformers==0.2.27`): no side-by-side run.",
                  ""]
    if smol:
        lines += [
            f"SmolLM2-135M-Instruct Q4_1 (`smollm2`, {smol['file_bytes']:,} bytes):",
            "",
            "| measurement | target | airoboros-ggml |",
            "|---|---|---|",
            f"| prompt processing, {smol['n_prompt']} tokens (tok/s) | "
            f"≥ {TARGETS['smollm2_prompt_tok_s']} | "
            f"{_fmt(smol['prompt_tok_s'], '.1f')} |",
            f"| generation, {smol['n_gen']} tokens (tok/s) | ≥ {TARGETS['smollm2_gen_tok_s']} | "
            f"{_fmt(smol['gen_tok_s'], '.1f')} |",
            f"| generation after the {smol['n_prompt']}-token prompt (tok/s) | — | "
            f"{_fmt(smol.get('gen_long_tok_s'), '.1f')} |",
            f"| time to first token, 16 tokens, warm process (s) | — | {_fmt(smol['ttft_s'], '.3f')} |",
            f"| peak RSS (MB) | — | {smol['peak_rss_bytes'] / MB:.0f} |",
            f"| load average before → after | — | {_load(smol)} |",
            "",
        ]
    lines += [f"Reference: {REFERENCE}.", ""]
    lines += ["Raw results:", "", "```json", json.dumps(results, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=REPO).stdout.strip() or "?"
    except OSError:
        return "?"


def print_summary(results: dict[str, Any]) -> None:
    """One line per engine and model on stdout, with ratios against ctransformers."""
    peer = results.get("ctransformers")
    for fmt, r in results["ours"].items():
        t = results["ttft"].get(fmt) or {}
        print(f"ours {fmt}: prompt {r['prompt_tok_s']:.2f} tok/s, gen {r['gen_tok_s']:.2f} tok/s, "
              f"RSS {r['peak_rss_bytes'] / MB:.0f} MB (budget {r['rss_budget_bytes'] / MB:.0f}), "
              f"second-process TTFT {_fmt(t.get('process_ttft_s'), '.2f')} s, load {_load(r)}")
    if peer:
        print(f"ctransformers: prompt {peer['prompt_tok_s']:.2f} tok/s, gen {peer['gen_tok_s']:.2f} tok/s, "
              f"RSS {peer['peak_rss_bytes'] / MB:.0f} MB, load {_load(peer)}")
        mine = results["ours"].get("ggml")
        if mine:
            print("ratios (ours ggml / ctransformers): "
                  f"prompt {mine['prompt_tok_s'] / peer['prompt_tok_s']:.2f}×, "
                  f"gen {mine['gen_tok_s'] / peer['gen_tok_s']:.2f}×")
    smol = results.get("smollm2")
    if smol:
        print(f"smollm2: prompt {smol['prompt_tok_s']:.1f} tok/s, gen {smol['gen_tok_s']:.1f} tok/s, "
              f"load {_load(smol)}")


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=600)
    p.add_argument("--formats", default="ggml,gguf", help="7B files to run: ggml, gguf, both or none ('')")
    p.add_argument("--no-ctransformers", action="store_true")
    p.add_argument("--no-smollm2", action="store_true")
    p.add_argument("--smollm2-n-gen", type=int, default=64)
    p.add_argument("--max-load", type=float, default=1.0, help="wait while the 1-minute load is above this")
    p.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for a quiet machine")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "speed.md")
    p.add_argument("--ctransformers-worker", metavar="FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ctransformers_worker:
        report = ctransformers_worker(args.ctransformers_worker, args.n_prompt, args.n_gen, args.threads,
                                      args.ctx, args.reps)
        json.dump(report, sys.stdout)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from make_models import make

    formats = [f for f in args.formats.split(",") if f]
    results: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "commit": _commit(), "ours": {}, "ttft": {}}
    paths = {fmt: make(fmt) for fmt in formats}
    for fmt, path in paths.items():
        results["ours"][fmt] = bench(str(path), args, args.n_prompt, args.n_gen, args.reps)
        # a second process, numba cache warm: process start -> first token of a 16-token prompt
        results["ttft"][fmt] = bench(str(path), args, 0, 0, 1)
    if not args.no_ctransformers and ctransformers_available():
        ggml = paths.get("ggml") or make("ggml")
        results["ctransformers"] = bench_ctransformers(ggml, args, args.n_prompt, args.reps)
    if not args.no_smollm2:
        results["smollm2"] = bench("smollm2", args, 512, args.smollm2_n_gen, args.reps)
    print_summary(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_markdown(results, args))
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
