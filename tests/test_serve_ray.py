"""Ray Serve: 2 replicas of SmolLM2 behind Ray's HTTP proxy answer concurrent ``openai`` client requests.

Slow (starts a local Ray instance and two model processes); needs the ``ray`` extra.
"""

import concurrent.futures
import socket

import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_answer_concurrent_clients(smollm2):
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    openai = pytest.importorskip("openai")
    from airoboros_ggml.serve.ray import build_app

    port = free_port()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(smollm2), num_replicas=2, n_ctx=256, n_threads=1), name="airoboros")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
        name = client.models.list().data[0].id
        questions = [f"What is {i} + {i}?" for i in range(8)]

        def ask(q):
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=12)
            return reply.choices[0].message.content, reply.usage.completion_tokens

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, questions))
        assert all(text and 0 < n <= 12 for text, n in answers)
        again = ask(questions[3])  # greedy: whichever replica answers, the same text
        assert again == answers[3]
    finally:
        serve.shutdown()
        ray.shutdown()
