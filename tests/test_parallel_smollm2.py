"""Parallel sequences on SmolLM2: 16 concurrent mixed requests give the texts of the same requests one by one.

Both models run without KV reuse. Measured (16 requests, steps of 1-4 decoding rows and 34-37-token prompt
chunks): every logit of every step equal to the bit, so the texts are identical. SmolLM2's integer kernels
(Q4_1, Q8_0 over 8-bit activations) compute each row of a batch of up to 32 (``MIXED_ROWS``) exactly as that
row alone, the decode attention likewise, and a prompt chunk is cut where the request alone cuts it.

What does move results is KV reuse: a reused prefix leaves a shorter rest of the prompt (here 10-13 tokens
instead of 34-37), which the 8-bit integer kernels evaluate instead of float32 tiles (chunks of more than 32
tokens): with reuse on, 9 of these 16 requests differed, logits moved by 0.5-1.7 at their first differing
step. That is a property of KV reuse (a single sequence has it too), not of batching.

The check (:func:`test_parallel.check_flips`) still allows near-tie flips, for kernels whose per-row
arithmetic depends on the batch (the K-quant integer kernels: ~1e-5 relative per dot product): at most
``PERTURBATION`` of logit change, far below the 0.5 of an arithmetic path switch, and greedy flips only
between tokens within ``TIE``.
"""

import threading

import pytest

import airoboros_ggml as ag
from test_parallel import LogitsLog, check_flips

PERTURBATION = 0.05  # largest logit change batching may cause (measured: 0)
TIE = 2 * PERTURBATION
MAX_FLIPS = 4
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Count from one to five.",
             "Write a haiku about rain.", "What is 2+2?", "Say hello in Spanish.", "Who wrote Hamlet?",
             "Describe a cat in one sentence."]
OPTIONS = [
    {"temperature": 0.0, "max_tokens": 24, "repeat_penalty": 1.0},
    {"temperature": 0.7, "seed": 11, "max_tokens": 16},
    {"temperature": 0.0, "max_tokens": 12, "stop": [".", ","]},
    {"temperature": 1.0, "seed": 5, "max_tokens": 8, "top_k": 20},
]


@pytest.fixture(scope="module")
def models(smollm2):
    # no KV reuse on either side: a reused prefix changes where a prompt is cut into chunks, and a chunk of
    # <= 32 tokens takes the integer kernels while a longer one takes the float path (see the module docs).
    # One thread each (the arithmetic does not depend on it): 25 s at load average 8 on 2 cores, where
    # two-thread kernels wait for descheduled workers
    alone = ag.load(smollm2, n_ctx=256, prompt_format="auto", kv_reuse=False, n_threads=1)
    batched = ag.load(smollm2, n_ctx=256, prompt_format="auto", n_seq=4, kv_reuse=False, n_threads=1)
    yield alone, batched
    batched.close()
    alone.close()


def test_sixteen_concurrent_requests_equal_one_by_one(models):
    alone, batched = models
    jobs = [(QUESTIONS[i % len(QUESTIONS)], OPTIONS[i % len(OPTIONS)]) for i in range(16)]
    prompts = [alone.format_chat([{"role": "user", "content": q}]) for q, _ in jobs]
    alone_log = LogitsLog(alone)
    batched_log = LogitsLog(batched, reference=alone_log)
    expected = []
    for i, (p, (_, o)) in enumerate(zip(prompts, jobs)):
        with alone_log.label(i):
            expected.append(alone.complete(p, **o))
    results = [None] * len(jobs)

    def work(i):
        with batched_log.label(i):
            results[i] = batched.complete(prompts[i], **jobs[i][1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flips = check_flips(jobs, expected, results, alone_log, batched_log, PERTURBATION, TIE)
    assert len(flips) <= MAX_FLIPS, flips
    assert all(r.usage.prompt_tokens == e.usage.prompt_tokens for r, e in zip(results, expected))


def test_server_on_smollm2_answers_as_the_model(models):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from airoboros_ggml.serve import create_app

    alone, batched = models
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    expected = alone.chat(messages, temperature=0, max_tokens=16)
    client = TestClient(create_app(batched, model_name="smollm2"))
    request = {"model": "smollm2", "messages": messages, "temperature": 0, "max_tokens": 16}
    body = client.post("/v1/chat/completions", json=request).json()  # alone in the batch: the single-row path
    assert body["choices"][0]["message"]["content"] == expected.text
    assert body["usage"]["completion_tokens"] == expected.usage.completion_tokens
