"""Every evaluation of the process runs on one thread, whichever thread asked for it.

numba's OpenMP layer gives each thread that runs a parallel kernel its own team of workers, and with two
teams on 2 cores every parallel region waits for sleeping workers (measured: a request took twice as long for
the rest of the process). These tests check the mechanism, not the speed: the compute thread's contract
(result, exception, re-entry, order) and that a model used from the main thread, from executor threads, from
asyncio and through the continuous-batching scheduler only ever evaluates on that one thread.
"""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import airoboros_ggml as ag
from airoboros_ggml import FileType
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.runtime import compute_thread
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab


def test_run_returns_raises_and_reenters():
    assert not compute_thread.on_compute_thread()
    assert compute_thread.run(lambda a, b=0: a + b, 2, b=3) == 5
    assert compute_thread.run(threading.current_thread).name == compute_thread.THREAD_NAME

    def fail():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        compute_thread.run(fail)
    # a call made on the compute thread runs at once (a queued one would wait for itself forever)
    assert compute_thread.run(lambda: compute_thread.run(compute_thread.on_compute_thread)) is True


def test_calls_from_many_threads_run_on_one_in_arrival_order():
    order: list[int] = []
    idents: set[int] = set()

    def job(i):
        idents.add(threading.get_ident())
        order.append(i)
        return i * i

    with ThreadPoolExecutor(8) as pool:
        squares = list(pool.map(lambda i: compute_thread.run(job, i), range(200)))
    assert squares == [i * i for i in range(200)]
    assert sorted(order) == list(range(200)) and len(idents) == 1


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    hp = tiny_hparams(n_ctx_train=128)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_0, seed=0)  # block-quantized: the parallel kernels
    return write_gguf(tmp_path_factory.mktemp("ct") / "tiny.gguf", hp, tiny_vocab(hp.n_vocab), tensors)


def _record_threads(model) -> set[str]:
    """Names of the threads that run ``model``'s forward pass from now on (wraps its ``hidden``)."""
    names: set[str] = set()
    hidden = model._forward.hidden

    def recording(*args, **kwargs):
        names.add(threading.current_thread().name)
        return hidden(*args, **kwargs)

    model._forward.hidden = recording
    return names


@pytest.mark.parametrize("n_seq", [1, 3])
def test_a_model_evaluates_only_on_the_compute_thread(tiny_path, n_seq):
    model = ag.load(tiny_path, n_seq=n_seq, prompt_format="raw")
    names = _record_threads(model)
    kw = {"max_tokens": 4, "temperature": 0}
    first = model.complete("a b", **kw).text
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: model.complete("a b", **kw).text, range(6))) == [first] * 6
    assert "".join(c.text for c in model.stream("a b", **kw)) == first
    assert asyncio.run(model.acomplete("a b", **kw)).text == first
    model.embed("a b")
    model.logits(model.tokenizer.tokenize("a b", add_bos=True))
    assert names == {compute_thread.THREAD_NAME}
