"""Soak: 8 clients x 25 requests against a SmolLM2 server process, some streams closed mid-way.

Every request asks SmolLM2 to copy a number of its own (a few-shot copy prompt that it completes with the
number, far from any near-tie), so an answer carrying another request's number would show a mix-up. Every
request that was not cancelled must complete with its own number; when all are done no request is left in
flight; the server's resident memory stays within +- 50 MB of its value at the 50th completed request up
to the 200th.
"""

import random
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from server_process import ServerProcess  # noqa: E402

pytestmark = pytest.mark.slow  # 200 requests on 2 cores: about a minute

CLIENTS, REQUESTS = 8, 25
CANCEL = 0.25  # share of requests streamed and closed after their first chunk
RSS_FROM, RSS_SLACK = 50, 50 * 2**20
SHOTS = "Copy the number.\nnumber: 4821 -> 4821\nnumber: 9350 -> 9350\nnumber: 1776 -> 1776\n"


def prompt(number: int) -> str:
    return f"{SHOTS}number: {number} ->"


def test_eight_clients_with_cancellations(smollm2):
    server = ServerProcess(["-m", "airoboros_ggml", "serve", "-m", str(smollm2), "--parallel", "4", "-c", "256",
                            "-t", "1", "--model-name", "smollm2"])
    numbers = random.Random(0).sample(range(1000, 10000), CLIENTS * REQUESTS)  # one per request, all different
    lock = threading.Lock()
    answers: dict[int, tuple[str, str | None]] = {}  # request -> (text, finish_reason) of completed requests
    cancelled: set[int] = set()
    rss: list[tuple[int, int]] = []  # (requests finished so far, server RSS then)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        rng = random.Random(k)
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        try:
            for i in range(k * REQUESTS, (k + 1) * REQUESTS):
                options = {"model": "smollm2", "prompt": prompt(numbers[i]), "temperature": 0}
                draw = rng.random()
                if draw < CANCEL:  # streamed, closed after the first chunk while 32 tokens are due
                    stream = api.completions.create(max_tokens=32, stream=True, **options)
                    next(iter(stream))
                    stream.close()
                    result = None
                elif draw < (1 + CANCEL) / 2:
                    chunks = list(api.completions.create(max_tokens=8, stream=True, stop=["\n"],
                                                           **options))
                    text = "".join(c.choices[0].text for c in chunks if c.choices)
                    result = (text, [c.choices[0].finish_reason for c in chunks if c.choices][-1])
                else:
                    reply = api.completions.create(max_tokens=8, stop=["\n"], **options)
                    result = (reply.choices[0].text, reply.choices[0].finish_reason)
                with lock:
                    if result is None:
                        cancelled.add(i)
                    else:
                        answers[i] = result
                    rss.append((len(answers) + len(cancelled), server.rss_bytes()))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(answers) + len(cancelled) == CLIENTS * REQUESTS and cancelled and answers
        wrong = {i: a for i, a in answers.items() if a[0].strip() != str(numbers[i]) or a[1] != "stop"}
        assert not wrong, {i: (numbers[i], a) for i, a in wrong.items()}
        with httpx.Client(base_url=server.url) as http:
            deadline = time.monotonic() + 60
            while http.get("/health").json()["in_flight"] and time.monotonic() < deadline:
                time.sleep(0.1)  # the last closed streams leave at the scheduler's next step
            assert http.get("/health").json()["in_flight"] == 0
        base = next(r for n, r in rss if n >= RSS_FROM)
        drift = [(n, (r - base) / 2**20) for n, r in rss if n >= RSS_FROM and abs(r - base) > RSS_SLACK]
        assert not drift, drift  # (request, MiB off the RSS at request 50)
    finally:
        server.stop()
