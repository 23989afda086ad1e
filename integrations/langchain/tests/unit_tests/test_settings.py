"""Construction and option mapping, without loading a model."""

import airoboros_ggml
import pytest
from airoboros_ggml import LoadOptions, ModelFormatError, SamplingOptions
from airoboros_ggml.generation.templates import DEFAULT_PROMPT_FORMAT
from pydantic import ValidationError

from langchain_airoboros_ggml import AiroborosGGML, AiroborosGGMLEmbeddings, ChatAiroborosGGML
from langchain_airoboros_ggml._settings import LOAD_FIELDS, SAMPLING_FIELDS

CLASSES = [AiroborosGGML, ChatAiroborosGGML]


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(airoboros_ggml, "load_shared", refuse)
    monkeypatch.setattr(airoboros_ggml, "load", refuse)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_core_option_is_a_field_with_the_core_default(cls):
    fields = cls.model_fields
    for name, info in SamplingOptions.model_fields.items():
        assert name in fields, f"sampling option {name} has no field"
        if name not in ("logit_bias", "stop"):  # None on the adapter: the core's empty default
            assert fields[name].default == info.default, name
    for name, info in LoadOptions.model_fields.items():
        assert name in fields, f"load option {name} has no field"
        assert fields[name].default == info.default, name
    assert fields["prompt_format"].default == DEFAULT_PROMPT_FORMAT
    assert set(SAMPLING_FIELDS) | {"stop"} >= set(SamplingOptions.model_fields)
    assert set(LOAD_FIELDS) == set(LoadOptions.model_fields)


@pytest.mark.parametrize("cls", [*CLASSES, AiroborosGGMLEmbeddings])
def test_construction_loads_nothing(cls, no_loading):
    for _ in range(3):
        instance = cls(model_path="smollm2", n_ctx=512)
    assert instance.model_name == "smollm2"


def test_max_tokens_defaults_to_until_eos_or_full_context():
    assert AiroborosGGML(model_path="smollm2").max_tokens is None
    assert ChatAiroborosGGML(model_path="smollm2").max_tokens is None


@pytest.mark.parametrize("cls", [*CLASSES, AiroborosGGMLEmbeddings])
def test_unknown_argument_is_refused(cls):
    with pytest.raises(ValidationError, match="temprature"):
        cls(model_path="smollm2", temprature=0.5)


def test_remote_only_standard_params_are_accepted_and_dropped():
    chat = ChatAiroborosGGML(model_path="smollm2", api_key="x", timeout=60, max_retries=2)
    assert not {"api_key", "timeout", "max_retries"} & set(chat.model_dump())


def test_model_path_or_model_required():
    with pytest.raises(ValidationError, match="model_path"):
        AiroborosGGML()


def test_load_options_refused_with_a_loaded_model():
    model = object.__new__(airoboros_ggml.Model)  # stands for a loaded model; never run here
    with pytest.raises(ValidationError, match="n_ctx"):
        AiroborosGGML(model=model, n_ctx=256)
    with pytest.raises(ValidationError, match="either"):
        AiroborosGGML(model=model, model_path="smollm2")
    assert AiroborosGGML(model=model, temperature=0.1).client is model


def test_call_stops_are_added_to_instance_stops():
    llm = AiroborosGGML(model_path="smollm2", stop=["\n", "END"])
    assert llm._sampling(["END", "Q:"], {})["stop"] == ["\n", "END", "Q:"]
    assert llm._sampling(None, {})["stop"] == ["\n", "END"]
    assert AiroborosGGML(model_path="smollm2")._sampling(["Q:"], {})["stop"] == ["Q:"]


def test_call_options_override_fields_for_the_call_only():
    llm = AiroborosGGML(model_path="smollm2", temperature=0.7, max_tokens=64)
    before = llm.model_dump()
    options = llm._sampling(None, {"temperature": 0.0, "top_k": 5})
    assert (options["temperature"], options["top_k"], options["max_tokens"]) == (0.0, 5, 64)
    assert llm.model_dump() == before
    SamplingOptions(**options)  # a valid core call


def test_unset_options_are_left_to_the_core():
    options = AiroborosGGML(model_path="smollm2")._sampling(None, {})
    unset = {"seed", "max_tokens", "grammar", "json_schema", "response_format", "regex", "logit_bias"}
    assert not unset & options.keys()


def test_load_option_per_call_is_refused():
    with pytest.raises(ValueError, match="n_ctx"):
        AiroborosGGML(model_path="smollm2")._sampling(None, {"n_ctx": 64})


@pytest.mark.parametrize("cls", CLASSES)
def test_langsmith_params(cls):
    instance = cls(model_path="/models/airoboros-l2-7b.q4_K_M.bin", temperature=0.2, max_tokens=10, stop=["x"])
    params = instance._get_ls_params(stop=["y"])
    assert params["ls_provider"] == "airoboros_ggml"
    assert params["ls_model_name"] == "airoboros-l2-7b.q4_K_M.bin"
    assert params["ls_model_type"] == ("llm" if cls is AiroborosGGML else "chat")
    assert (params["ls_temperature"], params["ls_max_tokens"], params["ls_stop"]) == (0.2, 10, ["x", "y"])
    assert instance._get_ls_params(temperature=0.9)["ls_temperature"] == 0.9


@pytest.mark.parametrize("cls", [*CLASSES, AiroborosGGMLEmbeddings])
def test_missing_model_file_is_a_clear_error(cls, tmp_path):
    missing = tmp_path / "nope.ggmlv3.q4_0.bin"
    with pytest.raises(ModelFormatError, match=f"{missing}: no such file"):
        cls(model_path=str(missing)).client


def test_unreadable_model_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"<html>404 Not Found</html>")
    llm = AiroborosGGML(model_path=str(junk))
    with pytest.raises(ModelFormatError, match="not a model file"):
        llm.invoke("Hello")
    with pytest.raises(ModelFormatError, match="not a model file"):
        ChatAiroborosGGML(model_path=str(junk)).invoke("Hello")
