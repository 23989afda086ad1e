"""llama.cpp measured the way ``airoboros-ggml bench`` measures us, for side-by-side tables (issue 13).

llama.cpp comes from llama-cpp-python (``pip install llama-cpp-python``, which compiles it: ~15 minutes) — a
benchmark-only dependency, never a runtime or test one. It may live in another interpreter than ours: the
worker below imports nothing from airoboros-ggml, and :func:`bench_llamacpp` runs it with the interpreter
given by ``--llama-cpp-python`` (default: ``$LLAMA_CPP_PYTHON``, else this one). GGUF files only (current
llama.cpp refuses GGML v3).

Measured per file, medians of ``reps`` runs, greedy (arg-max of the last logits, as our bench):
prompt processing of ``n_prompt`` random tokens in one ``eval`` (batch 512), generation of ``n_gen`` tokens after
an 8-token prompt and right after the long prompt, time to first token of a 16-token prompt, load time and
peak RSS.

Usage (the worker; ``speed.py`` and ``parallel.py`` call it)::

    LLAMA_CPP_PYTHON=/path/to/venv/bin/python python benchmarks/speed.py
    /path/to/venv/bin/python benchmarks/llamacpp_peer.py MODEL.gguf [--n-prompt 512] [--n-gen 16] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from peer_protocol import measure


def interpreter(explicit: str | None = None) -> str:
    """The Python that has ``llama_cpp``: ``explicit``, else ``$LLAMA_CPP_PYTHON``, else this one."""
    return explicit or os.environ.get("LLAMA_CPP_PYTHON") or sys.executable


def available(python: str) -> str | None:
    """llama-cpp-python's version when ``python`` can import it, else None."""
    try:
        proc = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                              capture_output=True, text=True, timeout=120, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def worker(path: str, n_prompt: int, n_gen: int, threads: int, ctx: int, reps: int) -> dict[str, Any]:
    """Measure llama.cpp on ``path`` (runs inside the llama-cpp-python interpreter)."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=ctx, n_threads=threads, n_threads_batch=threads, n_batch=512,
                verbose=False)
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def greedy() -> int:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))  # float32 (n_vocab,) last row
        return int(logits.argmax())

    result = measure(llm.reset, llm.eval, greedy, n_vocab, n_prompt, n_gen, reps)
    return {
        "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", "model": path, "n_threads": threads,
        "n_ctx": ctx, "reps": reps, "n_prompt": n_prompt, "n_gen": n_gen, **result, "load_s": load_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def bench_llamacpp(path: Path | str, python: str, n_prompt: int, n_gen: int, threads: int, ctx: int, reps: int,
                   timeout: float = 3600.0) -> dict[str, Any]:
    """:func:`worker` in a fresh subprocess of ``python``; its JSON report."""
    cmd = [python, str(Path(__file__).resolve()), str(path), "--n-prompt", str(n_prompt), "--n-gen", str(n_gen),
           "--threads", str(threads), "--ctx", str(ctx), "--reps", str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    """Run the worker and print its JSON report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=600)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    json.dump(worker(a.model, a.n_prompt, a.n_gen, a.threads, a.ctx, a.reps), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
