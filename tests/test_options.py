"""Load and sampling options: defaults, normalisation, and clear validation errors."""

from __future__ import annotations

import math
import os

import pytest
from pydantic import ValidationError, create_model

from airoboros_ggml.generation.options import SamplingOptions, format_validation_error, optional_fields
from airoboros_ggml.generation.templates import DEFAULT_PROMPT_FORMAT
from airoboros_ggml.runtime.options import LoadOptions, physical_cores


def error_text(cls, **kw) -> str:
    with pytest.raises(ValidationError) as info:
        cls(**kw)
    return format_validation_error(info.value)


def test_sampling_defaults_are_llama_cpp_main_2023():
    o = SamplingOptions()
    assert (o.temperature, o.top_k, o.top_p, o.min_p, o.tfs_z, o.typical_p) == (0.8, 40, 0.95, 0.0, 1.0, 1.0)
    assert (o.repeat_penalty, o.repeat_last_n, o.frequency_penalty, o.presence_penalty) == (1.1, 64, 0.0, 0.0)
    assert (o.mirostat, o.mirostat_tau, o.mirostat_eta) == (0, 5.0, 0.1)
    assert o.seed is None and o.max_tokens is None and o.stop == [] and o.logit_bias == {}


def test_load_defaults():
    o = LoadOptions()
    assert (o.n_ctx, o.n_threads, o.n_batch, DEFAULT_PROMPT_FORMAT, o.kv_reuse) == (None, None, 512, "airoboros", True)
    assert o.resolved_threads() == physical_cores()
    assert LoadOptions(n_threads=3).resolved_threads() == 3


def test_normalisation():
    o = SamplingOptions(stop="USER:", max_tokens=-1, seed=-1, logit_bias={"7": "-inf"})
    assert o.stop == ["USER:"] and o.max_tokens is None and o.seed is None
    assert o.logit_bias == {7: -math.inf}
    assert SamplingOptions(stop=None).stop == []
    assert SamplingOptions(stop=["", "###", ""]).stop == ["###"]
    assert SamplingOptions(max_tokens=0).max_tokens == 0
    assert SamplingOptions(seed=-1).seed is None and SamplingOptions(seed=5).seed == 5


@pytest.mark.parametrize(
    "kw,expected",
    [
        ({"top_k": -1}, "top_k: must be greater than or equal to 0 (got -1)"),
        ({"temperature": math.nan}, "temperature: must be a finite number (got nan)"),
        ({"temperature": math.inf}, "temperature: must be a finite number (got inf)"),
        ({"top_p": 0.0}, "top_p: must be greater than 0 (got 0.0)"),
        ({"top_p": 1.5}, "top_p: must be less than or equal to 1 (got 1.5)"),
        ({"min_p": -0.1}, "min_p: must be greater than or equal to 0 (got -0.1)"),
        ({"repeat_penalty": 0}, "repeat_penalty: must be greater than 0 (got 0)"),
        ({"repeat_last_n": -2}, "repeat_last_n: must be greater than or equal to -1 (got -2)"),
        ({"mirostat": 3}, "mirostat: must be 0, 1 or 2 (got 3)"),
        ({"max_tokens": -5}, "max_tokens: must be >= 0, or -1/None"),
        ({"logit_bias": {3: math.nan}}, "logit_bias: bias for token 3 must be finite or -inf"),
        ({"logit_bias": {-3: 1.0}}, "logit_bias: token ids must be >= 0"),
        ({"temprature": 0.5}, "temprature: unknown option (known options: temperature, top_k"),
    ],
)
def test_sampling_errors_name_the_option(kw, expected):
    assert expected in error_text(SamplingOptions, **kw)


@pytest.mark.parametrize(
    "kw,expected",
    [
        ({"n_ctx": 0}, "n_ctx: must be greater than 0 (got 0)"),
        ({"n_threads": -2}, "n_threads: must be greater than 0 (got -2)"),
        ({"n_batch": 0}, "n_batch: must be greater than 0"),
        ({"rms_norm_eps": math.nan}, "rms_norm_eps: must be a positive finite number or None, got nan"),
        ({"rope_freq_base": -1.0}, "rope_freq_base: must be a positive finite number"),
        ({"rope_freq_scale": math.inf}, "rope_freq_scale: must be a positive finite number"),
        ({"n_gpu_layers": 10}, "n_gpu_layers: unknown option"),
    ],
)
def test_load_errors_name_the_option(kw, expected):
    assert expected in error_text(LoadOptions, **kw)


def test_one_line_per_bad_option():
    lines = error_text(SamplingOptions, top_k=-1, top_p=2.0, foo=1).splitlines()
    assert len(lines) == 3
    assert [line.split(":")[0] for line in lines] == ["top_k", "top_p", "foo"]


def test_with_overrides_validates():
    base = SamplingOptions(temperature=0.2, stop=["a"])
    o = base.with_overrides(top_k=5, stop="b")
    assert (o.temperature, o.top_k, o.stop) == (0.2, 5, ["b"])
    assert base.top_k == 40
    with pytest.raises(ValidationError, match="top_k"):
        base.with_overrides(top_k=-3)
    with pytest.raises(ValidationError, match="bogus"):
        base.with_overrides(bogus=1)
    with pytest.raises(ValidationError):
        base.temperature = math.nan  # assignment is validated too


def test_physical_cores_is_within_the_affinity_set():
    n = physical_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_every_field_has_a_docstring():
    for cls in (LoadOptions, SamplingOptions):
        for name, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{name} has no attribute docstring"


def test_optional_fields_mirror_the_options_with_none_defaults():
    fields = optional_fields(SamplingOptions, exclude={"seed"})
    assert set(fields) == set(SamplingOptions.model_fields) - {"seed"}
    Mirror = create_model("Mirror", **fields)
    mirror = Mirror(top_k=5)
    assert mirror.top_k == 5 and mirror.temperature is None and mirror.stop is None
    assert Mirror.model_fields["top_k"].description == SamplingOptions.model_fields["top_k"].description
    with pytest.raises(ValidationError):
        Mirror(top_k="many")
    set_values = {name: value for name, value in mirror.model_dump().items() if value is not None}
    assert SamplingOptions(**set_values).top_k == 5
