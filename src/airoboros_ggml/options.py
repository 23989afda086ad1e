"""Load and sampling options as validated pydantic models.

Settings are split by concern (STYLE.md): :class:`LoadOptions` for what is fixed when a model is loaded
(context size, threads, RoPE, epsilon) and :class:`SamplingOptions` for what may change on every call.
Unknown options and bad values raise :class:`pydantic.ValidationError`; :func:`format_validation_error`
turns one into short lines that name each bad option, for the CLI and the adapters.

Defaults follow llama.cpp ``main`` as of 2023 (FORMATS.md §6).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

logger = logging.getLogger(__name__)

__all__ = [
    "LoadOptions",
    "SamplingOptions",
    "format_validation_error",
    "optional_fields",
    "physical_cores",
]


def physical_cores() -> int:
    """Count the physical CPU cores this process may run on.

    Hyper-threads share a core's execution units, and decoding is memory-bound, so one thread per
    physical core is the best default (USERS.md, "Threads"). The count is the number of distinct
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
    """Options fixed when a model is loaded."""

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

    seed: int | None = None
    """Default sampling seed for calls that give none; None or a negative value means fresh entropy."""

    prompt_format: str = "airoboros"
    """Prompt template name (see :mod:`airoboros_ggml.templates`), or ``auto`` for the file's own."""

    kv_reuse: bool = True
    """Re-use the KV cache for a prompt sharing a prefix with the previous call (results are identical)."""

    kv_type: Literal["f16", "f32"] = "f16"
    """Storage of cached keys/values: ``f16`` (as llama.cpp, half the memory) or ``f32`` (exact)."""

    exact_activations: bool = False
    """Multiply single tokens and small prompt batches (<= 32 tokens) by the weights in exact float32. The
    default (False) quantizes their activations to 8 bits per block and uses integer dot products, as
    llama.cpp does (block-quantized weights on AVX2 CPUs: 2-4.5x faster matrix-vector products, ~0.5% error
    per dot product); CPUs without AVX2 always use the exact kernels."""

    @field_validator("rope_freq_base", "rope_freq_scale", "rms_norm_eps")
    @classmethod
    def _check_positive_finite(cls, value: float | None) -> float | None:
        return _positive_finite_or_none(value)

    @field_validator("seed")
    @classmethod
    def _normalise_seed(cls, value: int | None) -> int | None:
        return None if value is None or value < 0 else value

    def resolved_threads(self) -> int:
        """Return ``n_threads`` or, when None, the number of physical cores."""
        return self.n_threads if self.n_threads is not None else physical_cores()


class SamplingOptions(BaseModel):
    """Per-call generation options, with llama.cpp ``main`` (2023) defaults.

    The sampler chain (see :mod:`airoboros_ggml.sampling`) is: logit bias -> repeat/frequency/presence
    penalties over the last ``repeat_last_n`` tokens -> top-k -> tail-free -> typical -> top-p ->
    min-p -> temperature -> draw. A temperature <= 0 picks the most likely token after bias and
    penalties (greedy). With ``mirostat`` 1 or 2 the truncation samplers are replaced by mirostat.

    Seed semantics: a ``seed`` makes a call reproducible — the same prompt, options and seed give the
    same tokens on every run. ``seed=None`` (or a negative seed, as in llama.cpp's ``-1``) draws fresh
    OS entropy for every call, so repeated calls differ.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    temperature: float = Field(default=0.8, allow_inf_nan=False)
    """Softmax temperature; <= 0 means greedy (argmax)."""

    top_k: int = Field(default=40, ge=0)
    """Keep the k most likely tokens; 0 disables."""

    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1 disables."""

    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    """Drop tokens less likely than ``min_p`` times the most likely one; 0 disables.

    0.0 matches the 2023 llama.cpp chain (min-p arrived in late 2023; current llama.cpp defaults to 0.05).
    """

    tfs_z: float = Field(default=1.0, gt=0.0, le=1.0)
    """Tail-free sampling parameter z; 1 disables."""

    typical_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Locally typical sampling mass; 1 disables."""

    repeat_penalty: float = Field(default=1.1, gt=0.0, allow_inf_nan=False)
    """Penalty on tokens seen in the last ``repeat_last_n`` tokens (positive logits divided, others
    multiplied); 1 disables."""

    repeat_last_n: int = Field(default=64, ge=-1)
    """How many recent tokens the penalties look at; 0 disables, -1 means the whole context."""

    frequency_penalty: float = Field(default=0.0, allow_inf_nan=False)
    """Subtracted from a seen token's logit once per occurrence in the penalty window; 0 disables."""

    presence_penalty: float = Field(default=0.0, allow_inf_nan=False)
    """Subtracted once from the logit of every token present in the penalty window; 0 disables."""

    mirostat: Literal[0, 1, 2] = 0
    """Mirostat mode: 0 off, 1 mirostat, 2 mirostat 2.0."""

    mirostat_tau: float = Field(default=5.0, gt=0.0, allow_inf_nan=False)
    """Mirostat target entropy (surprise, in bits)."""

    mirostat_eta: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    """Mirostat learning rate."""

    logit_bias: dict[int, float] = Field(default_factory=dict)
    """Added to the logits of the given token ids before anything else; ``-inf`` bans a token."""

    seed: int | None = None
    """Random seed for this call; None or negative means fresh entropy (see the class docstring)."""

    max_tokens: int | None = None
    """Most tokens to generate; None (or -1) means until EOS, a stop string or a full context."""

    stop: list[str] = Field(default_factory=list)
    """Stop strings: output is cut before the first one (a string or a list; empty strings ignored)."""

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[int, float]) -> dict[int, float]:
        for token, bias in value.items():
            if token < 0:
                raise ValueError(f"token ids must be >= 0, got {token}")
            if math.isnan(bias) or bias == math.inf:
                raise ValueError(f"bias for token {token} must be finite or -inf, got {bias!r}")
        return value

    @field_validator("seed")
    @classmethod
    def _normalise_seed(cls, value: int | None) -> int | None:
        return None if value is None or value < 0 else value

    @field_validator("max_tokens")
    @classmethod
    def _normalise_max_tokens(cls, value: int | None) -> int | None:
        if value is None or value == -1:
            return None
        if value < 0:
            raise ValueError(f"must be >= 0, or -1/None for 'until the context is full', got {value}")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _normalise_stop(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [s for s in value if not isinstance(s, str) or s]
        return value

    def with_overrides(self, **overrides: Any) -> SamplingOptions:
        """Return a validated copy with some options replaced (unknown names raise ValidationError)."""
        data = self.model_dump()
        data.update(overrides)
        return type(self).model_validate(data)


def optional_fields(options: type[BaseModel], exclude: Collection[str] = ()) -> dict[str, Any]:
    """The fields of an options class, each optional with default None, as ``pydantic.create_model`` takes them.

    The adapters (LangChain, LlamaIndex) expose the core's options under the same names with None meaning
    "the core's default", so defaults, constraints and option names live here only; the values are
    validated by the options class itself when they are used.

    Args:
        options: :class:`LoadOptions` or :class:`SamplingOptions` (any pydantic model).
        exclude: names to leave out.

    Returns:
        ``{name: (annotation | None, FieldInfo(default=None, description=the option's docstring))}``.
    """
    return {
        name: (field.annotation | None, Field(default=None, description=field.description))
        for name, field in options.model_fields.items()
        if name not in exclude
    }


_MODELS: dict[str, type[BaseModel]] = {"LoadOptions": LoadOptions, "SamplingOptions": SamplingOptions}


def format_validation_error(error: ValidationError) -> str:
    """Render a pydantic ValidationError as one short line per bad option.

    Args:
        error: raised by :class:`LoadOptions` or :class:`SamplingOptions` (or any pydantic model).

    Returns:
        Lines such as ``top_k: must be >= 0 (got -1)`` or ``temprature: unknown option``, joined by
        newlines.
    """
    model = _MODELS.get(error.title)
    lines = []
    for err in error.errors():
        name = ".".join(str(part) for part in err["loc"]) or error.title
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) if model is not None else ""
            lines.append(f"{name}: unknown option" + (f" (known options: {known})" if known else ""))
            continue
        msg = err["msg"].removeprefix("Value error, ")
        msg = msg.replace("Input should be", "must be").replace("Input", "value")
        got = err.get("input")
        if "got" not in msg and not isinstance(got, (dict, BaseModel)):
            msg += f" (got {got!r})"
        lines.append(f"{name}: {msg}")
    return "\n".join(lines)
