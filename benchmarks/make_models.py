"""Create (or reuse) the 7B-shaped Llama-2 q4_K_M benchmark files, as GGML v3 and as GGUF.

The weights are random but valid blocks of the types llama.cpp's q4_K_M quantizer chose (Q4_K, with half of
``attn_v``/``ffn_down`` and the output matrix in Q6_K); the vocabulary is the real Llama-2 one. The GGML v3
file is 4,080,714,368 bytes, exactly TheBloke's 7B q4_K_M files.

Files are generated tensor by tensor (never the whole 4 GB in memory) and cached outside the repository in
``$AIROBOROS_GGML_BENCH_CACHE`` (default ``~/.cache/airoboros-ggml-bench``).

Usage::

    PYTHONPATH=src python benchmarks/make_models.py [--format ggml|gguf|both]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from airoboros_ggml.formats import RawTensor, read_vocab, write_ggml, write_gguf
from airoboros_ggml.formats.tensors import expected_llama_shapes
from airoboros_ggml.ggml_types import FileType, GGMLType
from airoboros_ggml.hparams import HParams
from airoboros_ggml.tools.synthetic import llama_tensor_types, random_raw_tensor

log = logging.getLogger("make_models")

REPO = Path(__file__).resolve().parents[1]
VOCAB_FILE = REPO / "tests" / "data" / "ggml-vocab-llama-spm.gguf"
HPARAMS_7B = HParams(
    n_vocab=32000, n_embd=4096, n_layer=32, n_head=32, n_head_kv=32, n_ff=11008, n_rot=128,
    ftype=FileType.MOSTLY_Q4_K_M,
)
GGML_V3_BYTES = 4_080_714_368  # TheBloke's llama-2-7b*.ggmlv3.q4_K_M.bin
GGML_NAME = "llama-2-7b-shaped.ggmlv3.q4_K_M.bin"
GGUF_NAME = "llama-2-7b-shaped.q4_K_M.gguf"


def cache_dir() -> Path:
    """The benchmark file cache (created if missing)."""
    path = Path(os.environ.get("AIROBOROS_GGML_BENCH_CACHE", Path.home() / ".cache" / "airoboros-ggml-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class LazyTensors(Mapping[str, RawTensor]):
    """GGUF tensor name -> random :class:`RawTensor`, each created on access (one tensor in memory at a time).

    Each tensor has its own seed (derived from its name), so the same file comes out on every run.
    """

    def __init__(self, hparams: HParams, ftype: FileType, seed: int = 0):
        self.hparams = hparams
        self.shapes = expected_llama_shapes(hparams)
        self.types = llama_tensor_types(hparams, ftype)
        self.seed = seed
        self.index = {name: i for i, name in enumerate(self.types)}

    def __getitem__(self, name: str) -> RawTensor:
        shape = self.shapes[name]
        rng = np.random.default_rng([self.seed, self.index[name]])
        if len(shape) == 1:
            return RawTensor(GGMLType.F32, shape, 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32))
        return random_raw_tensor(self.types[name], shape, rng)

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)


def make(fmt: str, force: bool = False) -> Path:
    """Create (unless cached) the 7B-shaped q4_K_M file, ``fmt`` ``"ggml"`` or ``"gguf"``; return its path."""
    path = cache_dir() / (GGML_NAME if fmt == "ggml" else GGUF_NAME)
    if path.exists() and not force and (fmt != "ggml" or path.stat().st_size == GGML_V3_BYTES):
        return path
    tmp = path.with_suffix(path.suffix + ".part")
    vocab = read_vocab(VOCAB_FILE)
    tensors = LazyTensors(HPARAMS_7B, FileType.MOSTLY_Q4_K_M)
    start = time.perf_counter()
    log.info("writing %s ...", path)
    if fmt == "ggml":
        write_ggml(tmp, HPARAMS_7B, vocab, tensors)
    else:
        write_gguf(tmp, HPARAMS_7B, vocab, tensors)
    size = tmp.stat().st_size
    if fmt == "ggml" and size != GGML_V3_BYTES:
        log.warning("GGML v3 file is %d bytes, expected %d (difference %+d)", size, GGML_V3_BYTES,
                    size - GGML_V3_BYTES)
    tmp.rename(path)
    log.info("wrote %s: %d bytes in %.0f s", path, size, time.perf_counter() - start)
    return path


def settle_page_cache(path: Path) -> None:
    """Drop ``path`` from the page cache and read it back in order, so every measured file starts alike.

    How a file came into the page cache changes how fast its mmap streams: read in order (readahead) the
    kernel keeps it in 2 MB folios that can be mapped with large pages; filled by writes or page faults it
    stays in 4 KB pages. Measured (2026-12-01, one process, both 7B files alternated): GGML v3 generation
    6.26 vs GGUF 6.67 tok/s with the files cached as they happened to be, 7.04 vs 6.99 after this (the
    kernel's FileHugePages going from 32 MB to 7.8 GB). llama.cpp maps the same GGUF file, so it sees the
    same state. Linux only (elsewhere a no-op): ``posix_fadvise(DONTNEED)`` then 64 MB reads.
    """
    if not hasattr(os, "posix_fadvise"):
        return
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 64 << 20):
            pass
    finally:
        os.close(fd)
    log.info("page cache of %s settled in %.1f s", path.name, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Command line: create the files and print their paths and sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["ggml", "gguf", "both"], default="both")
    parser.add_argument("--force", action="store_true", help="rewrite even when cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for fmt in (["ggml", "gguf"] if args.format == "both" else [args.format]):
        path = make(fmt, args.force)
        print(f"{path}\t{path.stat().st_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
