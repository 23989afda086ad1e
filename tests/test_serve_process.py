"""``airoboros-ggml serve`` as a process: SIGTERM drains the requests in flight, refuses new ones, exits 0.

A tiny random-weight model keeps it quick; its end-of-generation token is banned so that every request runs
its full ``max_tokens`` (long enough to be in flight when the signal arrives).
"""

import json
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import airoboros_ggml as ag  # noqa: E402
from airoboros_ggml import FileType  # noqa: E402
from airoboros_ggml.formats import write_gguf  # noqa: E402
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab  # noqa: E402
from server_process import ServerProcess  # noqa: E402

HP = tiny_hparams(n_ctx_train=2048)
MAX_TOKENS = 600


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=3, scale=0.08)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", HP, tiny_vocab(HP.n_vocab), tensors)


def test_sigterm_drains_requests_in_flight_and_exits_0(tiny_path):
    model = ag.load(tiny_path, n_ctx=64)
    banned = {str(t): -100 for t in range(model.n_vocab) if model.tokenizer.is_eog(t)}
    model.close()
    server = ServerProcess(["-m", "airoboros_ggml", "serve", "-m", str(tiny_path), "--parallel", "2", "-t", "1"])
    try:
        request = {"prompt": "Hello", "temperature": 0, "max_tokens": MAX_TOKENS, "logit_bias": banned}
        blocking: list = []
        other = threading.Thread(target=lambda: blocking.append(
            httpx.post(server.url + "/v1/completions", json=request, timeout=300)))
        events: list = []
        done = threading.Event()

        def read_stream():
            body = {**request, "stream": True, "stream_options": {"include_usage": True}}
            with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=300) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line.removeprefix("data: "))
            done.set()

        streaming = threading.Thread(target=read_stream)
        streaming.start()
        other.start()
        deadline = time.monotonic() + 120
        while httpx.get(server.url + "/health").json()["in_flight"] < 2 or not events:  # both under way
            assert time.monotonic() < deadline and streaming.is_alive(), server.output()
            time.sleep(0.01)
        server.terminate()
        refused_while_draining = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(server.url + "/health", timeout=2)
            except httpx.ConnectError:
                refused_while_draining = not done.is_set()
                break
            time.sleep(0.02)
        streaming.join(timeout=300)
        other.join(timeout=300)
        assert refused_while_draining  # new connections were refused while the stream was still being answered
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[-1]["usage"]["completion_tokens"] == MAX_TOKENS
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert blocking[0].status_code == 200 and blocking[0].json()["usage"]["completion_tokens"] == MAX_TOKENS
        assert server.proc.wait(timeout=60) == 0, server.output()
    finally:
        server.stop()
