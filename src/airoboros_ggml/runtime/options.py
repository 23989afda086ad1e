"""Load options: what is fixed when a model is loaded (context size, threads, RoPE, epsilon, KV cache).

A validated pydantic model (user-facing configuration): unknown options and bad values raise
:class:`pydantic.ValidationError`, which :func:`airoboros_ggml.generation.options.format_validation_error`
renders one line per bad option.
"""

from __future__ import annotations

import math
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["LoadOptions", "physical_cores"]


def physical_cores() -> int:
    """Count the physical CPU cores this process may run on.

    Hyper-threads share a core's execution units, and decoding is memory-bound, so one thread per
    physical core is the best default (docs/users.md, "Threads"). The count is the number of distinct
    ``(physical id, core id)`` pairs in ``/proc/cpuinfo`` among the CPUs of ``os.sched_getaffinity``,
    further capped by a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``) when one is set.

    Returns:
        At least 1. Falls back to the affinity size or ``os.cpu_count()`` where ``/proc`` is missing.
    """
    try:
        allowed = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    count = len(allowed)
    try:
        cores: set[tuple[str, str]] = set()
        proc, phys = -1, "0"
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    proc, phys = int(value), "0"
                elif key == "physical id":
                    phys = value
                elif key == "core id" and proc in allowed:
                    cores.add((phys, value))
        if cores:
            count = len(cores)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def _positive_finite_or_none(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a positive finite number or None, got {value!r}")
    return value


class LoadOptions(BaseModel):
    """Options fixed when a model is loaded.

    The sampling seed and the prompt format are not load options: :func:`airoboros_ggml.load` takes them too,
    as the model's default :class:`~airoboros_ggml.SamplingOptions` and its prompt template.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    n_ctx: int | None = Field(default=None, gt=0)
    """Context window in tokens; None uses the model's training context (4096 for Llama-2)."""

    n_threads: int | None = Field(default=None, gt=0)
    """Worker threads for the kernels; None uses :func:`physical_cores`."""

    n_batch: int = Field(default=512, gt=0)
    """Prompt tokens evaluated per forward call while processing a prompt."""

    rope_freq_base: float | None = None
    """RoPE base frequency; None uses the file's value (10000 for Llama-2, 1e6 for CodeLlama)."""

    rope_freq_scale: float | None = None
    """RoPE linear position scale (e.g. 0.5 for a 2x extended-context fine-tune); None uses the file's."""

    rms_norm_eps: float | None = None
    """RMSNorm epsilon; None uses the file's value (GGML v3 files carry none: 1e-5 for Llama-2)."""

    kv_reuse: bool = True
    """Re-use the KV cache for a prompt sharing a prefix with the previous call. Results match a fresh
    evaluation up to float rounding: the suffix runs in a smaller batch, which can change the last bits of
    the logits (and so, rarely, a sampled near-tie); turn it off for bit-reproducible results."""

    kv_type: Literal["f16", "f32"] = "f16"
    """Storage of cached keys/values: ``f16`` (as llama.cpp, half the memory) or ``f32`` (exact)."""

    n_seq: int = Field(default=1, ge=1, le=32)
    """Sequence slots: with more than one, concurrent calls (several threads, async tasks, the server,
    :meth:`~airoboros_ggml.Model.complete_many`) are decoded together, one token of each per forward step
    (continuous batching). Each slot holds ``n_ctx`` positions (memory is used only as they fill)."""

    exact_activations: bool = False
    """Multiply activations by the weights in exact float32. The default (False) quantizes them to 8 bits per
    block and uses integer dot products, as llama.cpp does (block-quantized weights on AVX2 CPUs: 2-4.5x
    faster matrix-vector products, ~0.5% error per dot product): single tokens and batches up to 32 tokens
    for every block-quantized type, longer prompt batches for the K-quants (other types' long batches are
    exact); CPUs without AVX2 always use the exact kernels."""

    @field_validator("rope_freq_base", "rope_freq_scale", "rms_norm_eps")
    @classmethod
    def _check_positive_finite(cls, value: float | None) -> float | None:
        return _positive_finite_or_none(value)

    def resolved_threads(self) -> int:
        """Return ``n_threads`` or, when None, the number of physical cores."""
        return self.n_threads if self.n_threads is not None else physical_cores()
