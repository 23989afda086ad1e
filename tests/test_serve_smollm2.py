"""The server on SmolLM2, in its own process, with real clients: ``openai`` (sync, async, streaming) and
``langchain-openai``'s ``ChatOpenAI``.

The server decodes with 4 sequence slots and no KV reuse; the answers are compared with the same model
loaded alone in the test process, exactly: a request alone in the batch takes the single-sequence
arithmetic, and SmolLM2's rows are computed bit-identically when requests share steps (measured, see
test_parallel_smollm2.py). One thread each (the server and the test's model): on a loaded 2-core machine
two-thread parallel kernels wait for descheduled workers (this module took 165 s with 2 threads at load
average 8, 36 s with 1).
"""

import asyncio

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import airoboros_ggml as ag  # noqa: E402
from server_process import ServerProcess, serve_code  # noqa: E402

GREEDY = {"temperature": 0.0, "max_tokens": 16}
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Who wrote Hamlet?", "What is 2+2?"]


def ask(question):
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def alone(smollm2):
    model = ag.load(smollm2, n_ctx=512, prompt_format="auto", kv_reuse=False, n_threads=1)
    yield model
    model.close()


@pytest.fixture(scope="module")
def expected(alone):
    return {q: alone.chat(ask(q), **GREEDY) for q in QUESTIONS}


@pytest.fixture(scope="module")
def server(smollm2):
    process = ServerProcess(serve_code(n_ctx=512, n_seq=4, kv_reuse=False, n_threads=1))
    yield process
    process.stop()


def test_openai_client_sync_streaming_and_async(server, expected):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["smollm2"]
    question = QUESTIONS[0]
    reply = client.chat.completions.create(model="smollm2", messages=ask(question), **GREEDY)
    assert reply.choices[0].message.content == expected[question].text
    assert reply.choices[0].finish_reason == expected[question].finish_reason
    assert reply.usage.prompt_tokens == expected[question].usage.prompt_tokens
    assert reply.usage.completion_tokens == len(expected[question].tokens)
    stream = client.chat.completions.create(model="smollm2", messages=ask(question), stream=True, **GREEDY)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected[question].text

    async def concurrently():
        aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        replies = await asyncio.gather(
            *(aclient.chat.completions.create(model="smollm2", messages=ask(q), **GREEDY) for q in QUESTIONS))
        return [r.choices[0].message.content for r in replies]

    assert asyncio.run(concurrently()) == [expected[q].text for q in QUESTIONS]


def test_langchain_chat_openai(server, expected):
    chat_openai = pytest.importorskip("langchain_openai")
    llm = chat_openai.ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model="smollm2", temperature=0,
                                 max_tokens=GREEDY["max_tokens"], max_retries=0, timeout=120)
    question = QUESTIONS[1]
    message = llm.invoke(question)
    assert message.content == expected[question].text
    assert message.usage_metadata["output_tokens"] == len(expected[question].tokens)
    assert "".join(chunk.content for chunk in llm.stream(question)) == expected[question].text
    assert [m.content for m in llm.batch(QUESTIONS)] == [expected[q].text for q in QUESTIONS]  # concurrent
