"""Compile (first run) or load from numba's on-disk cache every kernel a model will call, up front.

numba compiles a kernel on its first call for each new combination of argument types and, with
``cache=True``, saves the machine code in its cache (``__pycache__`` next to the sources, or
``NUMBA_CACHE_DIR``); later processes only load it. Warm-up makes that slow first call happen at one
announced moment instead of in the middle of the first answer.

It runs the model's own forward pass (:class:`.forward.LlamaForward`) over a tiny stand-in model with the
same weight types layer for layer (one stand-in layer per distinct combination of types), the same KV-cache
storage type and sequence slots, and zero weights, through every path a real request takes: the
:data:`SCENARIOS` table (a long prompt through the batched kernels, a short prompt and decode steps through
:mod:`.few_tokens`, several sequences decoding together). Whatever kernel those paths call is thereby
compiled, with exactly the argument types the real model passes (read-only weight maps included), and
nothing else: kernels of weight types the model lacks are never built. A new kernel reached from the forward
pass needs no entry here; a new *path* is one more row of :data:`SCENARIOS`.

:func:`dispatcher_signatures` lists what the package's kernels have been compiled for, to check that a
real request after warm-up compiles nothing (tests do).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba.core.registry import CPUDispatcher

from ..ggml_types import LAYOUTS, GGMLType
from ..hparams import HParams
from ..progress import progress_bar
from ..quants import WeightMatrix, prepare_weight
from .few_tokens import FEW_TOKENS
from .forward import LlamaForward
from .kv_cache import KVCache
from .weights import MATRIX_ROLES, LayerWeights, LlamaWeights

log = logging.getLogger(__name__)


STANDIN = HParams(n_vocab=8, n_embd=256, n_layer=1, n_head=4, n_head_kv=2, n_ff=256, n_rot=64, n_ctx_train=64)
"""Shape of the stand-in model: every block size divides 256; 4 query heads share 2 KV heads."""


@dataclasses.dataclass(frozen=True)
class KernelPlan:
    """What decides which kernel specialisations a model needs (equal plans need the same kernels)."""

    layer_types: tuple[tuple[GGMLType, ...], ...]
    """Distinct weight types of the layers' (wq, wk, wv, wo, w_gate, w_up, w_down), in first-seen order."""
    token_embd: GGMLType
    """Type of the token embedding."""
    output: GGMLType
    """Type of the output matrix."""
    quantized_activations: bool
    """Products through 8-bit activations (the model's ``not exact_activations``)."""
    kv_type: str
    """KV-cache storage (``f16``/``f32``)."""
    multi_sequence: bool
    """Several sequence slots (``n_seq > 1``): decode steps of several sequences run as one batch."""

    @property
    def weight_types(self) -> set[GGMLType]:
        """Every weight type of the model's matrices."""
        return {t for types in self.layer_types for t in types} | {self.token_embd, self.output}

    def to_json(self) -> str:
        """The plan as JSON (type names), for :meth:`from_json` in a helper process."""
        d = dataclasses.asdict(self)
        d["layer_types"] = [[t.name for t in types] for types in self.layer_types]
        d["token_embd"], d["output"] = self.token_embd.name, self.output.name
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KernelPlan:
        """The plan :meth:`to_json` wrote."""
        d = json.loads(text)
        d["layer_types"] = tuple(tuple(GGMLType[t] for t in types) for types in d["layer_types"])
        d["token_embd"], d["output"] = GGMLType[d["token_embd"]], GGMLType[d["output"]]
        return cls(**d)

    def describe(self) -> str:
        """A short description for the log: types, activations, cache."""
        types = ", ".join(sorted(t.name for t in self.weight_types))
        acts = "8-bit" if self.quantized_activations else "exact"
        return f"{types}; {acts} activations; {self.kv_type} cache" + ("; n_seq > 1" if self.multi_sequence else "")


def kernel_plan(weights: LlamaWeights, kv_type: str = "f16", n_seq: int = 1) -> KernelPlan:
    """The :class:`KernelPlan` of a model's weights and cache settings."""
    seen: dict[tuple[GGMLType, ...], None] = {}
    for layer in weights.layers:
        seen.setdefault(tuple(getattr(layer, role).ggml_type for role in MATRIX_ROLES), None)
    return KernelPlan(
        layer_types=tuple(seen),
        token_embd=weights.token_embd.ggml_type,
        output=weights.output.ggml_type,
        quantized_activations=weights.token_embd.quantized_activations,
        kv_type=kv_type,
        multi_sequence=n_seq > 1,
    )


def _zero_matrix(t: GGMLType, n_out: int, n_in: int, quantized: bool) -> WeightMatrix:
    """A read-only all-zero matrix (zero scales are valid blocks of every type)."""
    raw = np.zeros((n_out, LAYOUTS[t].row_bytes(n_in)), dtype=np.uint8)  # uint8 (n_out, row_bytes)
    raw.flags.writeable = False
    return prepare_weight(raw, t, n_in, quantized)


def _readonly_ones(n: int) -> np.ndarray:
    v = np.ones(n, np.float32)  # float32 (n,) a norm weight, read-only like the file's
    v.flags.writeable = False
    return v


def standin_forward(plan: KernelPlan) -> LlamaForward:
    """A zero-weight model of shape :data:`STANDIN` with the plan's weight types, one layer per type set."""
    hp = STANDIN.replace(n_layer=len(plan.layer_types))
    q = plan.quantized_activations
    shapes = {"wq": (hp.n_embd, hp.n_embd), "wk": (hp.n_embd_kv, hp.n_embd), "wv": (hp.n_embd_kv, hp.n_embd),
              "wo": (hp.n_embd, hp.n_embd), "w_gate": (hp.n_ff, hp.n_embd), "w_up": (hp.n_ff, hp.n_embd),
              "w_down": (hp.n_embd, hp.n_ff)}
    layers = [
        LayerWeights(
            attn_norm=_readonly_ones(hp.n_embd),
            ffn_norm=_readonly_ones(hp.n_embd),
            **{role: _zero_matrix(t, *shapes[role], q) for role, t in zip(MATRIX_ROLES, types, strict=True)},
        )
        for types in plan.layer_types
    ]
    weights = LlamaWeights(
        token_embd=_zero_matrix(plan.token_embd, hp.n_vocab, hp.n_embd, q),
        output_norm=_readonly_ones(hp.n_embd),
        output=_zero_matrix(plan.output, hp.n_vocab, hp.n_embd, q),
        layers=layers,
    )
    return LlamaForward(hp, weights)


def _prompt_and_logits(fwd: LlamaForward, plan: KernelPlan) -> None:
    """A prompt longer than the few-token path (batched products, numpy attention), then last-row logits.

    The last row's logits multiply the output matrix as every generation step does.
    """
    cache = KVCache(fwd.hp, FEW_TOKENS + 8, plan.kv_type)
    hidden = fwd.hidden(np.zeros(FEW_TOKENS + 1, np.int64), cache)
    fwd.logits(hidden[-1:])


def _all_logits(fwd: LlamaForward, plan: KernelPlan) -> None:
    """Logits of every row of a long prompt (perplexity, ``Model.logits``): the output matrix's batched product."""
    fwd.logits(np.zeros((FEW_TOKENS + 1, fwd.hp.n_embd), np.float32))


def _short_prompt_and_decode(fwd: LlamaForward, plan: KernelPlan) -> None:
    """A 2-token prompt, then two decode steps (the :mod:`.few_tokens` path through every layer)."""
    cache = KVCache(fwd.hp, 8, plan.kv_type)
    for n_tok in (2, 1, 1):
        fwd.hidden(np.zeros(n_tok, np.int64), cache)


def _sequences(fwd: LlamaForward, plan: KernelPlan) -> None:
    """One decode token in each of two sequence slots, as the continuous-batching scheduler runs them."""
    if not plan.multi_sequence:
        return
    cache = KVCache(fwd.hp, 8, plan.kv_type, n_seq=2)
    for seq in (0, 1):
        fwd.hidden(np.zeros(1, np.int64), cache, cache.batch(1, seq))
    fwd.hidden(np.zeros(2, np.int64), cache, cache.plan([(0, 1), (1, 1)]))


SCENARIOS: tuple[tuple[str, Callable[[LlamaForward, KernelPlan], None]], ...] = (
    ("prompt and logits", _prompt_and_logits),
    ("decode", _short_prompt_and_decode),
    ("sequences", _sequences),
    ("all logits", _all_logits),
)
"""The paths a request can take, each run once on the stand-in model: (name, run(forward, plan))."""

HELPER_SCENARIO = "prompt and logits"
"""The scenario a helper process compiles on a cold cache while this process compiles the others: the long
prompt path and the last row's logits, versus the layers' few-token path and the batched logits (their
kernels are disjoint but for a few shared ones of identical signature, whose cache entries then agree).
Measured on SmolLM2, 2 cores, one process per scenario alone: prompt and last logits 12 s (+1 s to start the
helper), decode 11 s, all logits 2 s."""

_warm: set[KernelPlan] = set()


def warm_up(plan: KernelPlan, progress: bool | None = None, helper: bool | None = None) -> float:
    """Compile or load every kernel ``plan`` needs (once per plan and process); return the seconds it took.

    Args:
        plan: from :func:`kernel_plan`.
        progress: draw a progress bar (default: on a terminal with INFO logging).
        helper: compile :data:`HELPER_SCENARIO` in a second process meanwhile (both cores; numba compiles one
            kernel at a time per process). Default: when this plan has no marker in the cache directory yet
            (first run) and the machine has two or more cores.
    """
    if plan in _warm:
        return 0.0
    log.info("preparing numba kernels for %s (compiled on the first run, then loaded from the on-disk cache)",
             plan.describe())
    start = time.perf_counter()
    marker = _marker(plan)
    if helper is None:
        helper = (os.cpu_count() or 1) > 1 and marker is not None and not marker.exists()
    worker = _start_helper(plan) if helper else None
    scenarios = sorted(SCENARIOS, key=lambda s: worker is not None and s[0] == HELPER_SCENARIO)  # helper's last
    fwd = standin_forward(plan)
    with progress_bar(len(scenarios), "kernels", unit="path", progress=progress) as bar:
        for name, run in scenarios:
            bar.set_postfix_str(name)
            if worker is not None and name == HELPER_SCENARIO and worker.wait() != 0:
                log.debug("warm-up helper failed (exit %s); compiling here", worker.returncode)
            run(fwd, plan)
            bar.update(1)
    _warm.add(plan)
    if marker is not None:
        try:
            marker.touch()
        except OSError:  # a read-only cache: nothing to remember
            pass
    seconds = time.perf_counter() - start
    log.info("kernels ready in %.1f s", seconds)
    return seconds


def _marker(plan: KernelPlan) -> Path | None:
    """File in the cache directory that says this plan was warmed up there once (None: no cache directory).

    Its name hashes the plan and the package's sources (paths, sizes, modification times): numba invalidates
    a kernel's cache entries when its source file changes (an upgrade, an edit), and a marker left from
    before would then skip the helper process on what is in fact a cold cache (13 s instead of 8 for SmolLM2).
    """
    where = cache_dir()
    if where is None:
        return None
    digest = hashlib.sha256((plan.to_json() + _sources_fingerprint()).encode()).hexdigest()[:16]
    return Path(where) / f"airoboros-warm-{digest}"


def _sources_fingerprint() -> str:
    """(path, size, mtime) of every Python source of the package, as one string."""
    root = Path(__file__).resolve().parent.parent
    entries = []
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        entries.append(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(entries)


def _start_helper(plan: KernelPlan) -> subprocess.Popen | None:
    """A process running :data:`HELPER_SCENARIO` of ``plan`` (same interpreter and numba cache), or None."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", __name__, plan.to_json(), HELPER_SCENARIO],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except OSError as e:
        log.debug("no warm-up helper process: %s", e)
        return None


def dispatcher_signatures(prefix: str = "airoboros_ggml") -> dict[str, int]:
    """Number of compiled (or cache-loaded) signatures of every numba kernel in the package's loaded modules.

    Module-level kernels, and the kernels that factories keep in module-level dicts (one-type kernels,
    e.g. ``quants.tiles._TILE_KERNELS``).
    """
    out = {}
    for name, module in list(sys.modules.items()):
        if not (name == prefix or name.startswith(prefix + ".")) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == name:
                out[f"{name}.{attr}"] = len(value.overloads)
            elif isinstance(value, dict):
                for key, kernel in list(value.items()):
                    if isinstance(kernel, CPUDispatcher):
                        out[f"{name}.{attr}[{key}]"] = len(kernel.overloads)
    return out



def cache_dir() -> str | None:
    """Where numba keeps this package's compiled kernels (``NUMBA_CACHE_DIR``, or ``__pycache__`` by the sources)."""
    from .step_kernels import rope_into

    cache = getattr(rope_into, "_cache", None)
    return getattr(cache, "_cache_path", None)


def _helper_main(argv: list[str]) -> int:
    """Entry point of the helper process: ``python -m airoboros_ggml.runtime.warmup PLAN_JSON SCENARIO``."""
    plan = KernelPlan.from_json(argv[0])
    fwd = standin_forward(plan)
    for name, run in SCENARIOS:
        if name in argv[1:]:
            run(fwd, plan)
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
