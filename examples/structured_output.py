"""Constrained output: a pydantic schema, JSON mode, a GBNF grammar, and a tool-calling round trip.

    python examples/structured_output.py [MODEL]   # MODEL: a .ggmlv3.*.bin or .gguf file, or "smollm2"
"""

import json
import sys

import pydantic

import airoboros_ggml

model = airoboros_ggml.load(sys.argv[1] if len(sys.argv) > 1 else "smollm2", prompt_format="auto", seed=7)


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    country: str = pydantic.Field(max_length=40)
    population_millions: float


# 1. a JSON Schema (here a pydantic class): the reply always validates
reply = model.chat([{"role": "user", "content": "Describe Paris."}], json_schema=City, max_tokens=80)
print(City.model_validate_json(reply.text))

# 2. JSON mode (OpenAI's response_format): any JSON object
reply = model.chat([{"role": "user", "content": "Describe a dog."}], response_format={"type": "json_object"},
                   max_tokens=80)
print(json.loads(reply.text))

# 3. a GBNF grammar (llama.cpp syntax)
reply = model.chat([{"role": "user", "content": "Is the sky blue?"}], grammar='root ::= ("yes" | "no") "."')
print(reply.text)

# 4. tools: the model calls one, we answer with a "tool" message, the model writes the final reply
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
reply = model.chat(messages, tools=tools, tool_choice="required", max_tokens=64)
call = reply.tool_calls[0]
print(reply.finish_reason, call.name, call.arguments)
messages += [{"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"}]
print(model.chat(messages, tools=tools, tool_choice="none", max_tokens=48).text)
