"""Benchmark the quantization kernels: matvec GB/s and matmul GFLOP/s per weight type.

Usage: PYTHONPATH=src python benchmarks/kernels.py [--types Q4_K,Q6_K] [--runs 5] [--quick]

matvec: GB/s of raw weight bytes streamed on 4096x4096, 11008x4096, 4096x11008 at 1 and 2 threads, plus a
small SmolLM2-sized matrix (1536 x 576, or 1536 x 768 for 256-element blocks) at 2 threads, where per-call and
per-row overheads show (microseconds per call in brackets).
matmul: GFLOP/s (2*n_out*n_in*n_tok / s) on 11008x4096 at batch 64 and 512 (2 numba threads; numpy's BLAS
single-threaded inside each of the 2 worker threads). int8: the same for the integer kernels over 8-bit
activations (types in ``INT_KERNELS``; matmul at batch 16 through the row kernel and at batch 512 through the
tiled kernel of ``quants.int_gemm`` for the K-quants, activation quantization included; the other types' batch
512 is the tiles + BLAS path again). Medians of ``--runs`` runs.
Writes benchmarks/results/kernels.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, prepare_weight, quantize
from airoboros_ggml.quants.weight import INT_KERNELS

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]
CACHE = Path(os.environ.get("AIROBOROS_BENCH_CACHE", "/tmp/airoboros_ggml_bench"))


def random_rows(t: GGMLType, n_out: int, n_in: int) -> np.ndarray:
    """Valid quantized rows uint8 (n_out, row_bytes): 128 quantized Gaussian rows tiled (cached under /tmp)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"{t.name}_{n_in}.npy"
    if f.exists():
        base = np.load(f)
    else:
        rng = np.random.default_rng(0)
        base = quantize(rng.standard_normal((128, n_in)).astype(np.float32), t)
        np.save(f, base)
    return np.ascontiguousarray(np.tile(base, (n_out // 128 + 1, 1))[:n_out])


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (compile)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def int8_cells(t: GGMLType, rng: np.random.Generator, runs: int, quick: bool) -> list[str]:
    """Integer kernels (8-bit activations, the runtime's default): matvec 1/2 threads, small matvec, batch 16
    and (unless ``quick``) 512."""
    shape = (11008, 4096)
    W = prepare_weight(random_rows(t, *shape), t, shape[1], quantized_activations=True)
    x = rng.standard_normal(shape[1]).astype(np.float32)
    gbs = []
    for nt in (1, 2):
        numba.set_num_threads(nt)
        gbs.append(W.raw.nbytes / median_time(lambda: W.matvec(x), max(runs, 21)) / 1e9)
    small = (1536, 576 if TYPE_TRAITS[t].block_size == 32 else 768)
    Ws = prepare_weight(random_rows(t, *small), t, small[1], quantized_activations=True)
    xsm = rng.standard_normal(small[1]).astype(np.float32)
    dt_small = median_time(lambda: Ws.matvec(xsm), max(runs, 21))
    X = rng.standard_normal((16, shape[1])).astype(np.float32)
    dt16 = median_time(lambda: W.matmul(X), max(runs, 5))
    cells = [f"{gbs[0]:.1f} / {gbs[1]:.1f}", f"{Ws.raw.nbytes / dt_small / 1e9:.1f} ({dt_small * 1e6:.0f})",
             f"{2 * W.n_out * W.n_in * 16 / dt16 / 1e9:.0f}"]
    if quick:
        return [*cells, "-"]
    X = rng.standard_normal((512, shape[1])).astype(np.float32)
    dt512 = median_time(lambda: W.matmul(X), max(3, runs // 2))
    return [*cells, f"{2 * W.n_out * W.n_in * 512 / dt512 / 1e9:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip matmul at 512")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "kernels.md"))
    args = ap.parse_args()
    try:  # matmul's worker threads each call BLAS; keep OpenBLAS itself single-threaded (as the model does)
        from airoboros_ggml.runtime.blas import set_blas_threads

        set_blas_threads(1)
    except ImportError:
        pass
    types = [GGMLType[s] for s in args.types.split(",")] if args.types else [
        t for t, tr in TYPE_TRAITS.items() if tr.is_weight
    ]
    rng = np.random.default_rng(1)
    head = ["type", "bpw"] + [f"mv {o}x{i} {nt}T GB/s" for nt in (1, 2) for (o, i) in SHAPES]
    head += ["mv small 2T GB/s (us)", "mm b64 GFLOP/s", "mm b512 GFLOP/s"]
    head += ["int8 mv 11008x4096 1T / 2T GB/s", "int8 mv small 2T GB/s (us)", "int8 mm b16 GFLOP/s",
             "int8 mm b512 GOP/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in types:
        cells = [t.name, f"{TYPE_TRAITS[t].bits_per_weight:.2f}"]
        mats = {s: prepare_weight(random_rows(t, *s), t, s[1]) for s in SHAPES}
        for nt in (1, 2):
            numba.set_num_threads(nt)
            for s in SHAPES:
                W = mats[s]
                x = rng.standard_normal(s[1]).astype(np.float32)
                out = np.empty(s[0], dtype=np.float32)
                dt = median_time(lambda W=W, x=x, out=out: W.matvec(x, out), args.runs)
                cells.append(f"{W.raw.nbytes / dt / 1e9:.1f}")
        numba.set_num_threads(2)
        small = (1536, 576 if TYPE_TRAITS[t].block_size == 32 else 768)
        Ws = prepare_weight(random_rows(t, *small), t, small[1])
        xsm = rng.standard_normal(small[1]).astype(np.float32)
        dt = median_time(lambda: Ws.matvec(xsm), max(args.runs, 21))
        cells.append(f"{Ws.raw.nbytes / dt / 1e9:.1f} ({dt * 1e6:.0f})")
        W = mats[(11008, 4096)]
        for n_tok in (64, 512):
            if args.quick and n_tok == 512:
                cells.append("-")
                continue
            X = rng.standard_normal((n_tok, 4096)).astype(np.float32)
            dt = median_time(lambda W=W, X=X: W.matmul(X), max(3, args.runs // 2))
            cells.append(f"{2 * W.n_out * W.n_in * n_tok / dt / 1e9:.0f}")
        cells += int8_cells(t, rng, args.runs, args.quick) if t in INT_KERNELS else ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    note = (
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numba {numba.__version__},"
        f" numpy {np.__version__}. matvec: fused numba kernels, exact f32 activations; int8: integer kernels over "
        "activations quantized to 8 bits (Q8_K for K-quants, Q8_0/Q8_1 for the legacy types), the runtime's "
        "default (row kernels for one token and batches <= 32, tiled kernels above for the K-quants); matmul: "
        "256-row tiles decoded to float32 by the vectorised tile decoders + numpy BLAS (1 BLAS thread per "
        "worker, 2 workers). "
        "The machine is shared with other jobs, so numbers are noisy. Medians of "
        f"{args.runs} runs. Generated by `benchmarks/kernels.py`.\n"
    )
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    note += f"Load average at the end of the run: {' '.join(load)} (other jobs on the machine).\n"
    text = "\n".join(lines) + "\n" + note
    print(note)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("# Kernel benchmark\n\n" + text)


if __name__ == "__main__":
    main()
