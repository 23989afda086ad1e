"""Direct Python use: complete, stream and chat with a model file (default: the offline SmolLM2 model).

    python examples/python_api.py [MODEL]        # MODEL: a .ggmlv3.*.bin or .gguf file, or "smollm2"
"""

import sys

import airoboros_ggml

model_path = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
# prompt_format="auto" uses the template the GGUF declares (ChatML for SmolLM2); GGML v3 files get airoboros
model = airoboros_ggml.load(model_path, prompt_format="auto", seed=42)
print(model)

# 1. a raw completion (no template): the model continues the text
c = model.complete("The three primary colors are", max_tokens=24, temperature=0)
print("complete:", repr(c.text), c.finish_reason, c.usage)

# 2. streaming: chunks carry only new text; the last one says why generation ended
for chunk in model.stream("Once upon a time,", max_tokens=40, temperature=0.7, stop=["\n\n"]):
    print(chunk.text, end="", flush=True)
print(f"\n[{chunk.finish_reason}, {chunk.timings.generation_tokens_per_s:.1f} tok/s]")

# 3. multi-turn chat formatted with the model's prompt template; the KV cache of the earlier turns is reused
messages = [{"role": "user", "content": "What is the capital of France?"}]
reply = model.chat(messages, temperature=0, max_tokens=48)
print("chat:", reply.text)
messages += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": "And of Italy?"}]
reply = model.chat(messages, temperature=0, max_tokens=48)
print("chat:", reply.text, f"(reused {reply.usage.cached_tokens} of {reply.usage.prompt_tokens} prompt tokens)")

# 4. embeddings: mean-pooled final hidden state, float32 (n_embd,)
vector = model.embed("Paris is the capital of France.")
print("embedding:", vector.shape, vector.dtype)
