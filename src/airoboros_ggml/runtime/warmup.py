"""Compile (first run) or load from numba's on-disk cache every kernel a model needs, up front.

numba compiles a kernel on its first call and, with ``cache=True``, saves it next to the sources; later
processes only load it. Warming up on a one-row dummy matrix of each weight type makes the one slow first
call happen at a known moment, announced in the log, instead of in the middle of the first token.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..ggml_types import LAYOUTS, GGMLType
from ..progress import progress_bar
from ..quants import prepare_weight
from .weights import LlamaWeights

log = logging.getLogger(__name__)

_warm: set[GGMLType] = set()


def weight_types(weights: LlamaWeights) -> set[GGMLType]:
    """The ggml types of every matrix of a model."""
    matrices = [weights.token_embd, weights.output]
    for layer in weights.layers:
        matrices += [layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down]
    return {m.ggml_type for m in matrices}


def warm_up(types: set[GGMLType], n_in: int = 256) -> None:
    """Run matvec (exact and 8-bit activations), matmul and get_rows once per type on a zero matrix.

    Zero scales are valid blocks.
    """
    todo = sorted(types - _warm)
    if not todo:
        return
    log.info("preparing numba kernels for %s (compiled on the first run, then loaded from the on-disk cache)",
             ", ".join(t.name for t in todo))
    start = time.perf_counter()
    x = np.ones((3, n_in), dtype=np.float32)  # float32 (3, n_in)
    with progress_bar(len(todo), "kernels", unit="type") as bar:
        for t in todo:
            bar.set_postfix_str(t.name)
            raw = np.zeros((4, LAYOUTS[t].row_bytes(n_in)), dtype=np.uint8)  # uint8 (4, row_bytes)
            w = prepare_weight(raw, t, n_in)
            w.matvec(x[0])
            prepare_weight(raw, t, n_in, quantized_activations=True).matvec(x[0])
            w.matmul(x)
            w.get_rows(np.array([0, 3]))
            _warm.add(t)
            bar.update(1)
    log.info("kernels ready in %.1f s", time.perf_counter() - start)
