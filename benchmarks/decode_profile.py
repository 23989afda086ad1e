"""Where a decode step's time goes: wall and CPU per step (medians of 3 runs) and a cProfile breakdown.

Usage: ``PYTHONPATH=src python benchmarks/decode_profile.py [MODEL] [N_STEPS] [N_THREADS]`` (default
smollm2, 64 steps, 2 threads). Steps are ``logits(hidden([token]))`` + argmax after a short prompt (what
llama.cpp's "eval time" measures). Kernels called from Python are wrapped in functions named ``KERNEL_*``
so cProfile separates them from the glue around them; CPU per step (``process_time``) is less disturbed
than wall time by other processes on a shared machine.
"""

import cProfile
import io
import pstats
import statistics
import sys
import time

import numpy as np

import airoboros_ggml
from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import int_group
from airoboros_ggml.runtime import compute_thread, few_tokens

path = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 64
n_threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2


def _wrapped(f, name):
    def w(*args):
        return f(*args)

    w.__name__ = w.__qualname__ = "KERNEL_" + name
    return w


_group_kernel = int_group.group_kernel


def _profiled_group_kernel(act: int, only: int = -1):
    return _wrapped(_group_kernel(act, only), f"group_{GGMLType(act).name}")


int_group.group_kernel = _profiled_group_kernel
for name in ("attend_one", "rope_qk_into", "silu_mul_into", "rms_norm_into"):
    setattr(few_tokens, name, _wrapped(getattr(few_tokens, name), name))

model = airoboros_ggml.load(path, n_threads=n_threads, n_ctx=600)
model.warm_up(progress=False)
fwd, cache = model._forward, model._cache
model._set_threads()
prompt = np.asarray(model.tokenizer.tokenize("What is the capital of France? Answer in one sentence.", add_bos=True))
cpu: list[float] = []


def run(steps: int) -> float:
    """Seconds per decode step of ``steps`` steps after the prompt."""
    cache.clear()
    tok = int(np.argmax(fwd.logits(fwd.hidden(prompt, cache)[-1:])[0]))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        tok = int(np.argmax(fwd.logits(fwd.hidden(np.array([tok]), cache))[0]))
    cpu.append((time.process_time() - c0) / steps)
    return (time.perf_counter() - t0) / steps


def on_compute_thread(steps: int) -> float:
    """:func:`run` on the process's compute thread, where the model evaluates (one OpenMP team)."""
    return compute_thread.run(run, steps)


def profiled(steps: int) -> cProfile.Profile:
    """:func:`run` under cProfile, on the compute thread (cProfile follows only the thread that enables it)."""

    def work() -> cProfile.Profile:
        profile = cProfile.Profile()
        profile.enable()
        run(steps)
        profile.disable()
        return profile

    return compute_thread.run(work)


on_compute_thread(4)
walls = [on_compute_thread(n_steps) for _ in range(3)]
wall = statistics.median(walls)
print(f"{path}, {n_threads} threads: {wall * 1e3:.2f} ms per step ({1 / wall:.1f} tok/s), CPU "
      f"{statistics.median(cpu[1:]) * 1e3:.2f} ms per step; runs {[round(w * 1e3, 2) for w in walls]} ms")
profile = profiled(n_steps)
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(16)
print(out.getvalue())
