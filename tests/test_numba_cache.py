"""A kernel loaded from numba's on-disk cache computes exactly what it computed when compiled.

numba compiles a kernel in the first process and saves machine code that later processes load. With
``fastmath`` the two were not the same code: the decode attention kernel gave results 1 ulp apart in the
first process and in every later one, enough to turn a sampled token at temperature 1.0 into another (a
constrained SmolLM2 test passed on a clean clone and failed on the second run). Here two processes with one
empty cache directory evaluate the same prompt and decode steps of small models of several weight types,
the first compiling everything and the second loading it; their logits must be bit-identical.

Not covered: ``exact_activations=True``. Its float32 kernels (:mod:`airoboros_ggml.quants.fused`) rely on
``fastmath`` to vectorize their reductions and do differ between the two processes (measured: every step of
all four models below); they need the treatment the decode attention got (explicit lanes, strict flags).
"""

import json
import os
import subprocess
import sys

import numpy as np

from airoboros_ggml import FileType
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

FILE_TYPES = [FileType.MOSTLY_Q4_K_M, FileType.MOSTLY_Q4_0, FileType.MOSTLY_Q5_1, FileType.MOSTLY_Q8_0]

WORKER = r"""
import json, sys
import numpy as np
import airoboros_ggml as ag
paths, out = json.loads(sys.argv[1]), sys.argv[2]
arrays = {}
for i, (path, exact) in enumerate(paths):
    model = ag.load(path, n_ctx=64, n_threads=2, exact_activations=exact, kv_reuse=False)
    prompt = [1] + [int(t) for t in np.random.default_rng(i).integers(3, model.n_vocab, 40)]
    with model._lock:
        model._cache.truncate(0)
        steps = [model._evaluate(prompt)]  # a 41-token prompt: the batched path
        for t in (5, 6, 7, 8):  # decode steps: the few-token path and the decode attention
            steps.append(model._evaluate([t]))
    arrays[str(i)] = np.stack(steps)
# the decode attention alone, on random f16 caches of several head shapes and lengths
from airoboros_ggml.runtime.decode_attention import attend_one
rng = np.random.default_rng(0)
for n_kv, group, hd in ((3, 3, 64), (2, 1, 128), (4, 2, 80)):
    keys, values = (rng.standard_normal((n_kv, 300, hd)).astype(np.float16).view(np.uint16) for _ in "kv")
    q = rng.standard_normal((n_kv, group, hd)).astype(np.float32)
    outs = []
    for end in range(1, 300, 7):
        outs.append(np.empty_like(q))
        attend_one(q, keys, values, end, outs[-1])
    arrays[f"attention {n_kv}x{group}x{hd}"] = np.stack(outs)
np.savez(out, **arrays)
"""


def test_cached_kernels_compute_what_compiled_kernels_did(tmp_path):
    paths = []
    for ftype in FILE_TYPES:
        hp = tiny_hparams(n_ctx_train=64)
        path = tmp_path / f"{ftype.name}.gguf"
        write_gguf(path, hp, tiny_vocab(hp.n_vocab), random_llama_tensors(hp, ftype, seed=1))
        paths.append((str(path), False))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    results = []
    for run in ("compiled", "cached"):
        out = tmp_path / f"{run}.npz"
        subprocess.run([sys.executable, "-c", WORKER, json.dumps(paths), str(out)], env=env, check=True, timeout=900)
        results.append(np.load(out))
    compiled, cached = results
    differing = []
    assert len(compiled.files) == len(paths) + 3
    for key in compiled.files:
        name = os.path.basename(paths[int(key)][0]) if key.isdigit() else key
        steps = [i for i in range(len(compiled[key])) if not np.array_equal(compiled[key][i], cached[key][i])]
        if steps:
            differing.append((name, steps))
    assert differing == []
