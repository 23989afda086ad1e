"""Sampling options (what may change on every call) as a validated pydantic model, and error rendering.

Settings are split by concern (docs/layout.md, "Settings by concern"):
:class:`~airoboros_ggml.runtime.options.LoadOptions` for what is fixed when a model is loaded,
:class:`SamplingOptions` for what may change on every call. Unknown options and bad values raise
:class:`pydantic.ValidationError`; :func:`format_validation_error` turns one into short lines that name each
bad option, for the CLI and the adapters.

Defaults follow llama.cpp ``main`` as of 2023 (docs/formats.md, "Generation defaults").
"""
from __future__ import annotations

import logging
import math
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..runtime.options import LoadOptions

logger = logging.getLogger(__name__)

__all__ = [
    "SamplingOptions",
    "format_validation_error",
    "optional_fields",
]


CONSTRAINTS = ("grammar", "json_schema", "response_format", "regex")
"""The :class:`SamplingOptions` fields that constrain the output (at most one per call)."""


class SamplingOptions(BaseModel):
    """Per-call generation options, with llama.cpp ``main`` (2023) defaults.

    The sampler chain (see :mod:`airoboros_ggml.generation.sampling`) is: logit bias -> repeat/frequency/presence
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

    grammar: str | None = None
    """GBNF grammar (llama.cpp syntax, start rule ``root``) the output must be a sentence of."""

    json_schema: dict[str, Any] | type[BaseModel] | None = None
    """JSON Schema (a dict, or a pydantic model class) the output must be a valid instance of."""

    response_format: dict[str, Any] | None = None
    """OpenAI shape: ``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}}}``."""

    regex: str | None = None
    """Regular expression (Rust ``regex`` syntax) the whole output must match."""

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

    @model_validator(mode="after")
    def _one_constraint(self) -> SamplingOptions:
        given = [name for name in CONSTRAINTS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(CONSTRAINTS)}; got {' and '.join(given)}")
        return self

    def constraints(self) -> dict[str, Any]:
        """The constraint options that are set (at most one), by name."""
        return {name: getattr(self, name) for name in CONSTRAINTS if getattr(self, name) is not None}

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
