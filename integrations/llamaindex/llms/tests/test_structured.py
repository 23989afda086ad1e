"""Structured output on SmolLM2: decoded under the output class's JSON schema, so a 135M model returns valid objects."""

import asyncio

from llama_index.core.prompts import PromptTemplate
from llama_index.llms.airoboros_ggml import AiroborosGGML
from pydantic import BaseModel, Field


class Animal(BaseModel):
    """An animal and two facts about it."""

    name: str
    legs: int
    can_fly: bool


class BoundedAnimal(BaseModel):
    """:class:`Animal` with bounds in its schema, so that every object fits in ``max_tokens``: unbounded, one of
    ten sampled answers (a 100-character name, then digits) ran past 64 tokens and was cut mid-object."""

    name: str = Field(max_length=32)
    legs: int = Field(ge=0, le=1000)
    can_fly: bool


PROMPT = PromptTemplate("Describe {animal}.")
ANIMALS = ["a dog", "a spider", "an eagle", "a snake", "a horse", "an ant", "a penguin", "a bat", "a fish", "a cat"]


def structured_llm(model) -> AiroborosGGML:
    return AiroborosGGML(model=model, temperature=0.7, seed=1, max_tokens=64)


def test_structured_predict_is_valid_for_ten_prompts(model):
    llm = structured_llm(model)
    results = [llm.structured_predict(BoundedAnimal, PROMPT, animal=animal) for animal in ANIMALS]
    assert all(isinstance(result, BoundedAnimal) for result in results)
    assert all(len(result.name) <= 32 and 0 <= result.legs <= 1000 for result in results)
    assert llm.model_dump()["max_tokens"] == 64  # the schema went to the calls, not to the instance


def test_async_and_streaming_structured_predict(model):
    llm = structured_llm(model)
    result = asyncio.run(llm.astructured_predict(Animal, PROMPT, animal="a cow"))
    assert isinstance(result, Animal)
    partials = list(llm.stream_structured_predict(Animal, PROMPT, animal="a duck"))
    assert len(partials) > 1
    assert isinstance(Animal.model_validate(partials[-1].model_dump()), Animal)


def test_as_structured_llm_answers_with_an_object(model):
    structured = structured_llm(model).as_structured_llm(Animal)
    response = structured.complete("Describe a frog.")
    assert isinstance(response.raw, Animal)
    assert Animal.model_validate_json(response.text) == response.raw


def test_schemas_are_closed_to_undeclared_keys():
    from llama_index.llms.airoboros_ggml.base import _closed_schema
    from pydantic import ConfigDict

    class Zoo(BaseModel):
        animals: list[Animal]
        keepers: dict[str, int]

    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        name: str

    schema = _closed_schema(Zoo)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Animal"]["additionalProperties"] is False
    assert schema["properties"]["keepers"]["additionalProperties"] == {"type": "integer"}
    assert _closed_schema(Open)["additionalProperties"] is True
