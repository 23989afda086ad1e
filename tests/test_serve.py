"""The OpenAI-compatible server on a tiny random-weight model: routes, streaming, usage, auth, limits, errors.

FastAPI's TestClient (httpx) drives the app in-process; ``test_openai_client_*`` start a real uvicorn server
on a free local port and talk to it with the ``openai`` package.
"""

import base64
import contextlib
import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import airoboros_ggml as ag  # noqa: E402
from airoboros_ggml import FileType  # noqa: E402
from airoboros_ggml.formats import write_gguf  # noqa: E402
from airoboros_ggml.serve import create_app  # noqa: E402
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab  # noqa: E402

HP = tiny_hparams(n_ctx_train=256)
GREEDY = {"temperature": 0.0, "max_tokens": 24}
NAME = "tiny"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=3, scale=0.08)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", HP, tiny_vocab(HP.n_vocab), tensors)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return ag.load(tiny_path, n_ctx=256)


@pytest.fixture(scope="module")
def client(tiny):
    return TestClient(create_app(tiny, model_name=NAME))


def sse_events(text: str) -> list:
    lines = [line.removeprefix("data: ") for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def assert_openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in response.text
    return error


def test_health_and_models(client):
    assert client.get("/health").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [NAME]
    assert client.get(f"/v1/models/{NAME}").json()["id"] == NAME
    assert_openai_error(client.get("/v1/models/other"), 404)


def test_completion_equals_model_complete_with_usage(client, tiny):
    expected = tiny.complete("Hello", **GREEDY)
    body = client.post("/v1/completions", json={"model": NAME, "prompt": "Hello", **GREEDY}).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert choice["text"] == expected.text and choice["finish_reason"] == expected.finish_reason
    usage = body["usage"]
    assert usage["prompt_tokens"] == expected.usage.prompt_tokens
    assert usage["completion_tokens"] == expected.usage.completion_tokens == len(expected.tokens)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completion_several_prompts_and_echo(client, tiny):
    prompts = ["Hello", "Once upon"]
    body = client.post("/v1/completions", json={"prompt": prompts, "echo": True, **GREEDY}).json()
    texts = [c["text"] for c in sorted(body["choices"], key=lambda c: c["index"])]
    assert texts == [p + tiny.complete(p, **GREEDY).text for p in prompts]


def test_streamed_completion_joins_to_the_blocking_one(client, tiny):
    expected = tiny.complete("Hello", **GREEDY)
    request = {"prompt": "Hello", "stream": True, "stream_options": {"include_usage": True}, **GREEDY}
    response = client.post("/v1/completions", json=request)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert "".join(c["text"] for e in events for c in e["choices"]) == expected.text
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]][-1] == expected.finish_reason
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == len(expected.tokens)
    assert len({e["id"] for e in events}) == 1


def test_chat_and_streamed_chat_equal_model_chat(client, tiny):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = tiny.chat(messages, **GREEDY)
    body = client.post("/v1/chat/completions", json={"model": NAME, "messages": messages, **GREEDY}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected.text}
    assert body["choices"][0]["finish_reason"] == expected.finish_reason
    assert body["usage"]["completion_tokens"] == len(expected.tokens)

    parts = [{"type": "text", "text": "Hi"}]  # content parts are read as their text
    request = {"messages": [messages[0], {"role": "user", "content": parts}], "stream": True, **GREEDY}
    events = sse_events(client.post("/v1/chat/completions", json=request).text)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == expected.text
    assert events[-1]["choices"][0]["finish_reason"] == expected.finish_reason


def test_embeddings_as_floats_and_base64(client, tiny):
    texts = ["Hello there", "Another text"]
    expected = tiny.embed_batch(texts)  # float32 (2, n_embd)
    body = client.post("/v1/embeddings", json={"input": texts, "model": NAME}).json()
    got = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert body["usage"]["prompt_tokens"] == sum(len(tiny.tokenizer.tokenize(t, add_bos=True)) for t in texts)
    b64 = client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"}).json()
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), "<f4"), expected[0])


def test_max_tokens_is_capped(tiny):
    capped = TestClient(create_app(tiny, max_tokens_limit=3))
    body = capped.post("/v1/completions", json={"prompt": "Hello", "temperature": 0, "max_tokens": 100}).json()
    assert body["usage"]["completion_tokens"] <= 3
    body = capped.post("/v1/completions", json={"prompt": "Hello", "temperature": 0}).json()
    assert body["usage"]["completion_tokens"] <= 3


def test_api_key(tiny):
    keyed = TestClient(create_app(tiny, api_key="sesame"))
    assert keyed.get("/health").status_code == 200
    assert_openai_error(keyed.get("/v1/models"), 401)
    error = assert_openai_error(keyed.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert error["code"] == "invalid_api_key"
    request = {"prompt": "Hi", "max_tokens": 2}
    assert_openai_error(keyed.post("/v1/completions", json=request), 401)
    ok = keyed.post("/v1/completions", json=request, headers={"Authorization": "Bearer sesame"})
    assert ok.status_code == 200


def test_bad_requests_answer_openai_shaped_4xx(client):
    post = client.post
    json_type = {"content-type": "application/json"}
    error = assert_openai_error(post("/v1/completions", content=b"{not json", headers=json_type), 400)
    assert "JSON" in error["message"]
    error = assert_openai_error(post("/v1/completions", json={"prompt": "Hi", "max_tokens": -1}), 422)
    assert error["param"] == "max_tokens"
    assert_openai_error(post("/v1/completions", json={"max_tokens": 2}), 422)  # no prompt
    assert_openai_error(post("/v1/chat/completions", json={"messages": []}), 422)
    error = assert_openai_error(post("/v1/completions", json={"prompt": "Hi", "model": "gpt-4"}), 404)
    assert error["code"] == "model_not_found"
    error = assert_openai_error(post("/v1/completions", json={"prompt": "Hi", "logit_bias": {"99999": 1}}), 400)
    assert "99999" in error["message"]
    error = assert_openai_error(post("/v1/completions", json={"prompt": "word " * 400}), 400)
    assert error["code"] == "context_length_exceeded"
    image = [{"type": "image_url", "image_url": {"url": "http://x"}}]
    assert_openai_error(post("/v1/chat/completions", json={"messages": [{"role": "user", "content": image}]}), 400)
    # the server still answers normally afterwards
    assert post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_oversized_body_answers_413(tiny):
    small = TestClient(create_app(tiny, max_body_bytes=1000))
    assert_openai_error(small.post("/v1/completions", json={"prompt": "x" * 2000}), 413)
    assert small.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}).status_code == 200


def test_full_server_answers_503_with_retry_after(tiny):
    app = create_app(tiny, max_in_flight=1)
    busy = TestClient(app)
    assert app.state.admission.enter()  # one request in flight
    try:
        response = busy.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
        assert_openai_error(response, 503)
        assert response.headers["retry-after"] == "1"
    finally:
        app.state.admission.leave()
    assert busy.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}).status_code == 200
    assert app.state.admission.in_flight == 0


def test_serve_command_line():
    from airoboros_ggml.cli.main import build_parser

    args = build_parser().parse_args(["serve", "-m", "x.gguf", "--parallel", "4", "--api-key", "k", "-c", "512"])
    assert (args.n_seq, args.api_key, args.n_ctx, args.host, args.port) == (4, "k", 512, "127.0.0.1", 8080)


# ------------------------------------------------------------------ a real server, real clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """Run ``app`` on uvicorn in a thread on a free local port; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_server(tiny):
    with serving(create_app(tiny, model_name=NAME)) as url:
        yield url


def test_openai_client_sync_stream_and_async(live_server, tiny):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=live_server + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = tiny.chat(messages, **GREEDY)
    reply = client.chat.completions.create(model=NAME, messages=messages, **GREEDY)
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.completion_tokens == len(expected.tokens)
    stream = client.chat.completions.create(model=NAME, messages=messages, stream=True, **GREEDY)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected.text
    completion = client.completions.create(model=NAME, prompt="Hello", **GREEDY)
    assert completion.choices[0].text == tiny.complete("Hello", **GREEDY).text
    vector = client.embeddings.create(model=NAME, input="Hello there").data[0].embedding
    np.testing.assert_allclose(vector, tiny.embed("Hello there"), rtol=0, atol=0)
    assert [m.id for m in client.models.list()] == [NAME]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=messages, max_tokens=1)

    async def concurrent():
        aclient = openai.AsyncOpenAI(base_url=live_server + "/v1", api_key="unused", max_retries=0)
        replies = await asyncio.gather(
            *(aclient.chat.completions.create(model=NAME, messages=messages, **GREEDY) for _ in range(3))
        )
        return [r.choices[0].message.content for r in replies]

    import asyncio

    assert asyncio.run(concurrent()) == [expected.text] * 3


def test_client_leaving_mid_stream_frees_the_model(live_server, tiny):
    httpx = pytest.importorskip("httpx")
    request = {"prompt": "Hello", "stream": True, "temperature": 0.0, "max_tokens": 200}
    with httpx.Client(base_url=live_server, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json=request) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break  # one event, then hang up
        # the abandoned generation released the model: a new request completes
        reply = http.post("/v1/completions", json={"prompt": "Hi", "temperature": 0, "max_tokens": 3})
        assert reply.status_code == 200
        deadline = time.monotonic() + 30
        while http.get("/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/health").json()["in_flight"] == 0


def test_bad_requests_leave_requests_in_flight_alone(tmp_path):
    """Every refused request (401, 413, 404, 422, 400) is answered while two generations are in flight, which
    then finish with the model's own answers.

    Q8_0 weights: their integer kernels compute each row of a shared step as alone (float32 weights would
    take BLAS for 3+ rows, another summation order), so the answers must equal the alone model's exactly.
    """
    httpx = pytest.importorskip("httpx")
    path = write_gguf(tmp_path / "q8.gguf", HP, tiny_vocab(HP.n_vocab), random_llama_tensors(HP, FileType.MOSTLY_Q8_0))
    alone = ag.load(path, n_ctx=256)
    model = ag.load(path, n_ctx=256, n_seq=2)  # the generations in flight run in the batch scheduler
    options = {"temperature": 0.0, "max_tokens": 120}
    expected = [alone.complete(p, **options).text for p in ("Hello", "Once upon")]
    key = {"Authorization": "Bearer sesame"}
    app = create_app(model, model_name=NAME, api_key="sesame", max_body_bytes=4000)
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            stream = http.stream("POST", "/v1/completions", headers=key,
                                 json={"prompt": "Hello", "stream": True, **options})
            response = stream.__enter__()
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))  # generating now
            results: list = []
            pending = threading.Thread(target=lambda: results.append(
                http.post("/v1/completions", headers=key, json={"prompt": "Once upon", **options}).json()))
            pending.start()
            grammar = {"prompt": "Hi", "grammar": "root ::= (", "max_tokens": 4}
            refused = [
                (http.post("/v1/completions", json={"prompt": "Hi"}), 401),
                (http.post("/v1/completions", json={"prompt": "Hi"}, headers={"Authorization": "Bearer x"}), 401),
                (http.post("/v1/completions", headers=key, json={"prompt": "x" * 5000}), 413),
                (http.post("/v1/completions", headers=key, json={"prompt": "Hi", "model": "gpt-4"}), 404),
                (http.post("/v1/completions", headers=key, json={"prompt": "Hi", "max_tokens": -1}), 422),
                (http.post("/v1/completions", headers={**key, "content-type": "application/json"}, content=b"{no"),
                 400),
                (http.post("/v1/completions", headers=key, json=grammar), 400),
            ]
            for reply, status in refused:
                assert_openai_error(reply, status)
            events = [json.loads(first.removeprefix("data: "))]
            events += [json.loads(x.removeprefix("data: ")) for x in lines if x.startswith("data: {")]
            stream.__exit__(None, None, None)
            pending.join(timeout=60)
        assert "".join(c["text"] for e in events for c in e["choices"]) == expected[0]
        assert results[0]["choices"][0]["text"] == expected[1]
    finally:
        model.close()
        alone.close()
