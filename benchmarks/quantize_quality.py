"""Quantization quality against llama.cpp, and perplexity against llama.cpp, on SmolLM2 (issue 17).

1. An f32 SmolLM2-135M GGUF whose weights are the shipped Q4_1 file dequantized (``quantize_file(..., "f32")``).
2. Per type (q4_K_M, q5_K_M, q8_0): our file with our (August-2023) recipe; llama.cpp's file from its
   ``llama_model_quantize`` (via llama-cpp-python) with llama.cpp's current recipe; and our file with exactly
   llama.cpp's per-tensor types (read back from its file: ``tensor_types=`` overrides), which compares the
   quantizers themselves on the same recipe.
3. Perplexity of every file on ``tests/data/genesis-kjv.txt`` with our ``perplexity`` (``-c 512``), and, where
   llama-cpp-python is importable, llama.cpp's own perplexity of the shipped Q4_1 file (its logits, scored
   with llama-perplexity's formula: chunks of 512, second half scored) -> the number recorded beside the slow
   test in ``tests/test_tools_perplexity.py``.
4. A markdown report -> ``benchmarks/results/quantize_quality.md``.

llama-cpp-python is a measuring instrument only (never a dependency); run this script with an interpreter
that has both it and airoboros-ggml installed::

    python benchmarks/quantize_quality.py [--chunks 44] [--work /tmp/qq] [--types q4_K_M,q5_K_M,q8_0]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

import airoboros_ggml  # noqa: E402
from airoboros_ggml.default_model import smollm2_path  # noqa: E402
from airoboros_ggml.formats import open_model_file  # noqa: E402
from airoboros_ggml.tools.perplexity import chunk_nll, perplexity  # noqa: E402
from airoboros_ggml.tools.quantize import parse_file_type, quantize_file  # noqa: E402

TEXT = REPO / "tests" / "data" / "genesis-kjv.txt"
OUT = REPO / "benchmarks" / "results" / "quantize_quality.md"


def llama_cpp_quantize(src: Path, dst: Path, ftype: int, n_threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def llama_cpp_perplexity(path: Path, text: str, n_ctx: int, n_chunks: int | None, n_threads: int) -> dict[str, Any]:
    """llama.cpp's logits for each chunk, scored as llama-perplexity scores them."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                          n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    add_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model))
    bos = llm.token_bos()
    chunks = len(tokens) // n_ctx if not n_chunks else min(n_chunks, len(tokens) // n_ctx)
    first, nlls = n_ctx // 2, []
    start = time.perf_counter()
    for c in range(chunks):
        chunk = tokens[c * n_ctx : (c + 1) * n_ctx]
        llm.reset()
        llm.eval([bos, *chunk[1:]] if add_bos else chunk)
        logits = np.asarray(llm.scores[:n_ctx], dtype=np.float32)  # float32 (n_ctx, n_vocab)
        nlls.append(chunk_nll(logits[first : n_ctx - 1], np.asarray(chunk[first + 1 :])))
    seconds = time.perf_counter() - start
    nll = np.concatenate(nlls)
    ppl = float(np.exp(nll.mean()))
    return {"ppl": ppl, "stderr": ppl * float(np.sqrt(nll.var() / (len(nll) - 1))), "n_tokens": len(tokens),
            "n_chunks": chunks, "tokens_per_s": chunks * n_ctx / seconds, "version": llama_cpp.__version__}


def ours_perplexity(path: Path, text: str, n_ctx: int, n_chunks: int | None) -> dict[str, Any]:
    model = airoboros_ggml.load(path, n_ctx=n_ctx)
    r = perplexity(model, text, n_ctx=n_ctx, n_chunks=n_chunks)
    return {"ppl": r.ppl, "stderr": r.stderr, "n_tokens": r.n_tokens, "n_chunks": r.n_chunks,
            "tokens_per_s": r.tokens_per_s, "size": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/airoboros-quantize-quality"))
    ap.add_argument("--types", default="q4_K_M,q5_K_M,q8_0")
    ap.add_argument("--chunks", type=int, default=0, help="chunks of 512 tokens per perplexity (0: the whole text)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    text = TEXT.read_text()
    n_chunks = args.chunks or None
    try:
        import llama_cpp  # noqa: F401

        have_llama_cpp = True
    except ImportError:
        have_llama_cpp = False
        print("llama-cpp-python is not importable: only our files are measured", file=sys.stderr)

    results: dict[str, Any] = {"date": dt.date.today().isoformat(), "load_before": os.getloadavg()[0], "n_ctx": 512,
                               "machine": platform.processor() or platform.machine()}
    f32 = args.work / "smollm2-f32.gguf"
    if not f32.exists():
        quantize_file(smollm2_path(), f32, "f32")
    results["shipped_q4_1"] = {"ours": ours_perplexity(smollm2_path(), text, 512, n_chunks)}
    if have_llama_cpp:
        results["shipped_q4_1"]["llama_cpp"] = llama_cpp_perplexity(smollm2_path(), text, 512, n_chunks, args.threads)
    results["f32"] = {"ours": ours_perplexity(f32, text, 512, n_chunks)}
    for label in args.types.split(","):
        ftype = parse_file_type(label)
        row: dict[str, Any] = {}
        ours = quantize_file(f32, args.work / f"ours-{label}.gguf", ftype)
        row["ours_recipe"] = {**ours_perplexity(ours.path, text, 512, n_chunks), "seconds": ours.seconds}
        if have_llama_cpp:
            theirs = args.work / f"llamacpp-{label}.gguf"
            start = time.perf_counter()
            llama_cpp_quantize(f32, theirs, int(ftype), args.threads)
            row["llama_cpp"] = {**ours_perplexity(theirs, text, 512, n_chunks),
                                "seconds": time.perf_counter() - start}
            with open_model_file(theirs) as mf:
                types = {name: info.ggml_type for name, info in mf.tensors.items()}
            same = quantize_file(f32, args.work / f"ours-llamacpp-recipe-{label}.gguf", ftype, tensor_types=types)
            row["ours_same_recipe"] = {**ours_perplexity(same.path, text, 512, n_chunks), "seconds": same.seconds}
            row["ours_same_recipe"]["bytes_equal_tensors"] = _equal_tensors(theirs, same.path)
        results[label] = row
        print(json.dumps({label: row}, indent=1), file=sys.stderr)
    results["load_after"] = os.getloadavg()[0]
    OUT.write_text(render(results))
    (OUT.with_suffix(".json")).write_text(json.dumps(results, indent=1) + "\n")
    print(OUT.read_text())


def _equal_tensors(a: Path, b: Path) -> str:
    with open_model_file(a) as x, open_model_file(b) as y:
        same = sum(bytes(x.tensors[n].data) == bytes(y.tensors[n].data) for n in x.tensors)
        return f"{same}/{len(x.tensors)}"


def render(r: dict[str, Any]) -> str:
    n = r["f32"]["ours"]
    lines = [
        "# Quantization quality and perplexity vs llama.cpp (SmolLM2-135M-Instruct)",
        "",
        f"{r['date']}, {r['machine']}, 2 threads, load {r['load_before']:.1f} -> {r['load_after']:.1f}. Text: "
        f"`tests/data/genesis-kjv.txt` ({n['n_tokens']} tokens), `-c {r['n_ctx']}`, {n['n_chunks']} chunks. "
        "f32 = the shipped Q4_1 weights dequantized. `benchmarks/quantize_quality.py`.",
        "",
        "| file | size (bytes) | PPL (ours) | ± | eval tok/s |",
        "|---|---|---|---|---|",
    ]

    def line(name: str, m: dict[str, Any]) -> None:
        lines.append(f"| {name} | {m.get('size', '')} | {m['ppl']:.4f} | {m['stderr']:.4f} | {m['tokens_per_s']:.0f} |")

    line("shipped Q4_1", r["shipped_q4_1"]["ours"])
    line("f32", r["f32"]["ours"])
    for label, row in r.items():
        if not isinstance(row, dict) or "ours_recipe" not in row:
            continue
        line(f"{label}, ours (Aug-2023 recipe)", row["ours_recipe"])
        if "llama_cpp" in row:
            line(f"{label}, llama.cpp llama_model_quantize", row["llama_cpp"])
            line(f"{label}, ours with llama.cpp's per-tensor types", row["ours_same_recipe"])
    lines.append("")
    llama = r["shipped_q4_1"].get("llama_cpp")
    if llama:
        ours = r["shipped_q4_1"]["ours"]
        lines += [
            f"Perplexity of the shipped Q4_1 file: ours {ours['ppl']:.4f} ± {ours['stderr']:.4f} "
            f"({ours['tokens_per_s']:.0f} tok/s), llama.cpp (llama-cpp-python {llama['version']}: its logits, "
            f"llama-perplexity's scoring) {llama['ppl']:.4f} ± {llama['stderr']:.4f} ({llama['tokens_per_s']:.0f} "
            f"tok/s); ratio {ours['ppl'] / llama['ppl']:.4f}.",
            "",
        ]
        for label, row in r.items():
            if isinstance(row, dict) and "ours_same_recipe" in row:
                s, t = row["ours_same_recipe"], row["llama_cpp"]
                lines.append(f"- {label}: ours / llama.cpp with the same per-tensor types = {s['ppl'] / t['ppl']:.4f} "
                             f"(identical tensors: {s['bytes_equal_tensors']}); our recipe / llama.cpp's = "
                             f"{row['ours_recipe']['ppl'] / t['ppl']:.4f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
