"""Speed and memory of airoboros-ggml on a 7B-shaped q4_K_M model and SmolLM2, vs llama.cpp and ctransformers.

Every measurement runs in a fresh subprocess (``airoboros-ggml bench --json``), so start-up and peak RSS are
real. Steps:

1. create or reuse the 7B-shaped q4_K_M files (GGML v3 and GGUF; ``benchmarks/make_models.py``) and settle their
   page cache (dropped, then read back in order: ``make_models.settle_page_cache``);
2. per file: prompt processing at 512 tokens, generation (after an 8-token prompt and right after the 512-token
   one), peak RSS at n_ctx 600, in ``--reps`` rounds that each run every engine and model once in a fresh
   process (ours on each file, llama.cpp, SmolLM2 and llama.cpp on it, interleaved: a shared machine whose
   speed drifts over a run affects them alike; each round starts one job later, so that every job takes every
   place in the order; medians over the rounds), then a SECOND process per file
   (numba cache warm) for the time from process start to the first token of a 16-token prompt;
3. when ``ctransformers`` is importable, the same measurements on the GGML v3 file (timed here around its
   ``eval``/``sample`` calls, batch size 512, in its own subprocess), with ratios;
4. when ``llama_cpp`` (llama-cpp-python) is importable by ``--llama-cpp-python`` (default
   ``$LLAMA_CPP_PYTHON``, else this interpreter), llama.cpp on the GGUF files, measured the same way
   (``benchmarks/llamacpp_peer.py``), with ratios;
5. SmolLM2-135M Q4_1 (``smollm2``): prompt 512 and generation (and llama.cpp on the same file);
6. a markdown table with the machine description, the load average around each measurement and the
   targets -> ``benchmarks/results/speed.md``.

The machine is shared: before each measurement the script waits (up to ``--max-wait`` seconds) for the
1-minute load average to fall below ``--max-load`` and records the load it ran under.

Usage::

    PYTHONPATH=src python benchmarks/speed.py [--reps 3] [--n-gen 16] [--formats ggml,gguf] [--no-smollm2]
        [--llama-cpp-python /path/to/venv/bin/python]
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llamacpp_peer  # noqa: E402  (benchmarks/ is on sys.path above)
from peer_protocol import measure  # noqa: E402

log = logging.getLogger("speed")

MB = 1024 * 1024


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

    from airoboros_ggml.tools.bench import peak_rss_bytes, process_age_s

    warnings.simplefilter("ignore")
    from ctransformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    llm = AutoModelForCausalLM.from_pretrained(
        path, model_type="llama", context_length=ctx, threads=threads, batch_size=512, gpu_layers=0
    )
    load_s = time.perf_counter() - t0
    greedy = {"top_k": 1, "temperature": 0.0, "repetition_penalty": 1.0}
    result = measure(llm.reset, llm.eval, lambda: llm.sample(**greedy), llm.vocab_size, n_prompt, n_gen, reps,
                     process_age=process_age_s)
    return {
        "engine": "ctransformers 0.2.27", "model": path, "n_threads": threads, "n_ctx": ctx, "reps": reps,
        "n_prompt": n_prompt, "n_gen": n_gen, **result, "load_s": load_s, "peak_rss_bytes": peak_rss_bytes(),
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


def bench_peer(path: Path, python: str, args: argparse.Namespace, n_prompt: int, n_gen: int,
               reps: int) -> dict[str, Any]:
    """llama.cpp on ``path`` (``llamacpp_peer.py`` under ``python``), with the load average around it."""
    before = wait_for_quiet(args.max_load, args.max_wait)
    report = llamacpp_peer.bench_llamacpp(path, python, n_prompt, n_gen, args.threads, args.ctx, reps,
                                          timeout=args.timeout)
    report["load"] = (before, loadavg())
    _log_result(report)
    return report


RATES = ("prompt_tok_s", "gen_tok_s", "gen_long_tok_s", "ttft_s", "first_call_s", "load_s", "process_ttft_s")
"""Per-process figures whose median over the rounds is reported."""


def merge_rounds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from one process per round: medians of :data:`RATES` (every round's value under ``runs``),
    the highest peak RSS, the lowest and highest load average seen; the rest from the last round."""
    merged = dict(reports[-1])
    merged["reps"] = len(reports)
    merged["runs"] = {}
    for key in RATES:
        values = [r[key] for r in reports if r.get(key) is not None and r[key] == r[key]]  # drop None/NaN
        merged["runs"][key] = values
        merged[key] = statistics.median(values) if values else reports[-1].get(key)
    merged["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in reports)
    merged["load"] = (min(r["load"][0] for r in reports), max(r["load"][1] for r in reports))
    return merged


# ----------------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return format(value, spec)


def _load(r: dict[str, Any] | None) -> str:
    return "—" if not r else f"{r['load'][0]:.2f} → {r['load'][1]:.2f}"


def render_markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The results tables (markdown): the 7B-shaped files, then SmolLM2, each with its peers and ratios."""
    ours = results["ours"]  # fmt -> bench report
    ttft = results["ttft"]  # fmt -> bench report of the second process
    formats = list(ours)
    smol = results.get("smollm2")
    any_r = next(iter(ours.values()), None) or smol
    lines = [
        "# Speed and memory",
        "",
        f"Measured {results['date']} at commit `{results['commit']}` by `benchmarks/speed.py` "
        f"(medians of {args.reps} rounds, one fresh process per engine and model in each, the engines "
        f"interleaved, each round starting one engine later; {args.threads} threads, n_ctx {args.ctx}). "
        "Load average: lowest before → highest after.",
        "",
        f"Machine: {any_r['machine'] if any_r else '?'}.",
        "",
    ]
    # peers of the 7B table: (column title, report, which of our formats the ratio compares with)
    peers = [(f"{r['engine']} (gguf)", r, "gguf") for r in [results.get("llamacpp")] if r]
    peers += [("ctransformers 0.2.27 (ggml)", r, "ggml") for r in [results.get("ctransformers")] if r]
    if formats:
        lines += [
            "7B-shaped Llama-2 q4_K_M files (random valid blocks, llama.cpp's q4_K_M type mix; "
            + ", ".join(f"{f}: {ours[f]['file_bytes']:,} bytes" for f in formats) + ").",
            "",
        ]
        sources = {f: {**ours[f], "process_ttft_s": (ttft.get(f) or {}).get("process_ttft_s")} for f in formats}
        columns = [(f"airoboros-ggml ({f})", sources[f]) for f in formats]
        ratios = [(f"ours ({f}) / {title.split(' (')[0]}", sources.get(f), peer) for title, peer, f in peers]
        budget = ours[formats[0]]["rss_budget_bytes"] / MB
        rows = [
            (f"prompt processing, {args.n_prompt} tokens (tok/s)", "prompt_tok_s", ".2f", 1.0, True),
            (f"generation, {args.n_gen} tokens (tok/s)", "gen_tok_s", ".2f", 1.0, True),
            (f"generation after the {args.n_prompt}-token prompt, {args.n_gen} tokens (tok/s)", "gen_long_tok_s",
             ".2f", 1.0, True),
            (f"peak RSS (MB; budget file + KV + 300 = {budget:.0f})", "peak_rss_bytes", ".0f", MB, False),
            ("time to first token, 16 tokens, warm process (s)", "ttft_s", ".2f", 1.0, False),
            ("process start → first token, 16 tokens, second process (s)", "process_ttft_s", ".2f", 1.0, False),
            ("load (s)", "load_s", ".2f", 1.0, False),
        ]
        lines += _table(rows, columns + [(t, r) for t, r, _ in peers], ratios)
        kv = ours[formats[0]]["kv_cache_bytes"] / MB
        lines += [
            f"KV cache: {kv:.0f} MB (f16 keys and values at n_ctx {args.ctx}, as llama.cpp). Peak RSS counts every "
            "memory-mapped page of the file that was touched, so it is ≈ file + KV + interpreter/numba/scratch.",
            "",
        ]
    if smol:
        smol_peer = results.get("llamacpp_smollm2")
        columns = [("airoboros-ggml", smol)] + ([(smol_peer["engine"], smol_peer)] if smol_peer else [])
        ratios = [("ours / llama.cpp", smol, smol_peer)] if smol_peer else []
        rows = [
            (f"prompt processing, {smol['n_prompt']} tokens (tok/s)", "prompt_tok_s", ".1f", 1.0, True),
            (f"generation, {smol['n_gen']} tokens (tok/s)", "gen_tok_s", ".1f", 1.0, True),
            (f"generation after the {smol['n_prompt']}-token prompt (tok/s)", "gen_long_tok_s", ".1f", 1.0, True),
            ("time to first token, 16 tokens, warm process (s)", "ttft_s", ".3f", 1.0, False),
            ("peak RSS (MB)", "peak_rss_bytes", ".0f", MB, False),
        ]
        lines += [f"SmolLM2-135M-Instruct Q4_1 (`smollm2`, {smol['file_bytes']:,} bytes):", ""]
        lines += _table(rows, columns, ratios)
    missing = [name for keys, name in ((("llamacpp", "llamacpp_smollm2"), "llama-cpp-python (`--llama-cpp-python`)"),
                                       (("ctransformers",), "ctransformers 0.2.27")) if not set(keys) & set(results)]
    if missing:
        lines += [f"Not measured side by side (not importable): {', '.join(missing)}.", ""]
    lines += ["Ratios above 1 favour airoboros-ggml (for times and memory: theirs / ours).", ""]
    lines += ["Raw results:", "", "```json", json.dumps(results, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _table(rows: list[tuple[str, str, str, float, bool]], columns: list[tuple[str, dict[str, Any]]],
           ratios: list[tuple[str, dict[str, Any] | None, dict[str, Any]]]) -> list[str]:
    """A markdown table: one row per (name, key, format, scale, higher-is-better), then the load averages."""
    head = ["measurement"] + [t for t, _ in columns] + [t for t, _, _ in ratios]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, key, spec, scale, higher in rows:
        cells = [name] + [_fmt(r.get(key) and r[key] / scale, spec) for _, r in columns]
        for _, mine, theirs in ratios:
            a, b = (mine or {}).get(key), theirs.get(key)
            ratio = (a / b if higher else b / a) if (a and b) else None
            cells.append(_fmt(ratio, ".2f") + ("×" if ratio else ""))
        out.append("| " + " | ".join(cells) + " |")
    loads = [_load(r) for _, r in columns] + [""] * len(ratios)
    out += ["| load average (1 min) before → after | " + " | ".join(loads) + " |", ""]
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=REPO).stdout.strip() or "?"
    except OSError:
        return "?"


def print_summary(results: dict[str, Any]) -> None:
    """One line per engine and model on stdout."""
    reports = [(f"ours {f}", r) for f, r in results["ours"].items()]
    reports += [(k, results[k]) for k in ("llamacpp", "ctransformers", "smollm2", "llamacpp_smollm2") if k in results]
    for name, r in reports:
        print(f"{name}: prompt {_fmt(r.get('prompt_tok_s'), '.2f')} tok/s, gen {_fmt(r.get('gen_tok_s'), '.2f')} "
              f"tok/s, RSS {r['peak_rss_bytes'] / MB:.0f} MB, load {_load(r)}")


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=600)
    p.add_argument("--formats", default="ggml,gguf", help="7B files to run: ggml, gguf, ggml,gguf, or none")
    p.add_argument("--no-ctransformers", action="store_true")
    p.add_argument("--no-smollm2", action="store_true")
    p.add_argument("--llama-cpp-python", metavar="PYTHON",
                   help="interpreter with llama_cpp for the llama.cpp columns (default: $LLAMA_CPP_PYTHON or this one)")
    p.add_argument("--no-llama-cpp", action="store_true")
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
    formats = [f for f in args.formats.split(",") if f and f != "none"]
    if set(formats) - {"ggml", "gguf"}:
        p.error(f"--formats: ggml, gguf, ggml,gguf or none, not {args.formats!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from make_models import make, settle_page_cache

    results: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "commit": _commit(), "ours": {}, "ttft": {}}
    paths = {fmt: make(fmt) for fmt in formats}
    for path in paths.values():  # both files (and llama.cpp's, the GGUF one) from the same page-cache state
        settle_page_cache(path)
    llama_python = llamacpp_peer.interpreter(args.llama_cpp_python)
    with_llama = not args.no_llama_cpp and llamacpp_peer.available(llama_python)
    # (where the report goes, how to measure once); every round runs each once, so that a machine whose
    # speed drifts over the minutes of a run slows every engine alike; round r starts at job r (mod the
    # number of jobs), so that no job always runs at the same place in the round (always right after
    # llama.cpp's 7 GB process, say: GGML ran ahead of GGUF by 1.8-4.5% in prompt processing when it always
    # came first, while the two alternated in one process differ by 0.6%)
    jobs: list[tuple[tuple[str, ...], Callable[[], dict[str, Any]]]] = []
    for fmt, path in paths.items():
        jobs.append((("ours", fmt), partial(bench, str(path), args, args.n_prompt, args.n_gen, 1)))
        if with_llama and fmt == "gguf":
            jobs.append((("llamacpp",), partial(bench_peer, path, llama_python, args, args.n_prompt, args.n_gen, 1)))
    if with_llama and formats and "gguf" not in paths:
        jobs.append((("llamacpp",), partial(bench_peer, make("gguf"), llama_python, args, args.n_prompt,
                                            args.n_gen, 1)))
    if not args.no_smollm2:
        jobs.append((("smollm2",), partial(bench, "smollm2", args, 512, args.smollm2_n_gen, 1)))
        if with_llama:
            from airoboros_ggml.default_model import smollm2_path

            jobs.append((("llamacpp_smollm2",), partial(bench_peer, smollm2_path(), llama_python, args, 512,
                                                        args.smollm2_n_gen, 1)))
    runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in range(args.reps):
        log.info("round %d of %d", r + 1, args.reps)
        first = r % len(jobs)
        for where, job in jobs[first:] + jobs[:first]:
            runs.setdefault(where, []).append(job())
    for where, reports in runs.items():
        merged = merge_rounds(reports)
        if len(where) == 2:
            results[where[0]][where[1]] = merged
        else:
            results[where[0]] = merged
    for fmt, path in paths.items():  # a second process, numba cache warm: process start -> first token
        results["ttft"][fmt] = bench(str(path), args, 0, 0, 1)
    if not args.no_ctransformers and ctransformers_available():
        ggml = paths.get("ggml") or make("ggml")
        results["ctransformers"] = bench_ctransformers(ggml, args, args.n_prompt, args.reps)
    print_summary(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_markdown(results, args))
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
