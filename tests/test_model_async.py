"""Async twins (astream/acomplete/astream_chat/achat/aembed_batch), embed_batch and load_shared on a tiny model."""

import asyncio
import gc
import threading
import weakref

import numpy as np
import pytest
from pydantic import ValidationError

import airoboros_ggml as ag
from airoboros_ggml import ContextOverflowError, FileType, ModelFormatError
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

HP = tiny_hparams(n_ctx_train=256)
GREEDY = {"temperature": 0.0, "max_tokens": 40}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=3, scale=0.08)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", HP, tiny_vocab(HP.n_vocab), tensors)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return ag.load(tiny_path, n_ctx=256)


def run(coro):
    return asyncio.run(coro)


def test_acomplete_and_astream_equal_the_sync_calls(tiny):
    expected = tiny.complete("Hello", **GREEDY)

    async def go():
        chunks = [c async for c in tiny.astream("Hello", **GREEDY)]
        return chunks, await tiny.acomplete("Hello", **GREEDY)

    chunks, completion = run(go())
    assert completion.text == expected.text and completion.tokens == expected.tokens
    assert "".join(c.text for c in chunks) == expected.text
    assert chunks[-1].finish_reason == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens


def test_achat_and_astream_chat_equal_chat(tiny):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = tiny.chat(messages, **GREEDY)

    async def go():
        streamed = "".join([c.text async for c in tiny.astream_chat(messages, **GREEDY)])
        return streamed, await tiny.achat(messages, **GREEDY)

    streamed, completion = run(go())
    assert streamed == completion.text == expected.text


def test_the_event_loop_keeps_running_during_generation(tiny):
    """A concurrent coroutine gets turns between chunks; a sync engine inside the coroutine would starve it."""

    async def go():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        seen = []
        async for _ in tiny.astream("Hello", temperature=0.0, max_tokens=60):
            seen.append(ticks)
        stop.set()
        await task
        return seen

    seen = run(go())
    assert len(seen) > 10
    increases = sum(b > a for a, b in zip(seen, seen[1:]))
    assert increases >= len(seen) // 2  # the ticker ran while tokens were being generated


def test_closing_an_async_stream_early_releases_the_model(tiny):
    async def go():
        stream = tiny.astream("Hello", temperature=0.0, max_tokens=100)
        first = await stream.__anext__()
        await stream.aclose()
        return first

    run(go())
    result = {}

    def call():
        result["c"] = tiny.complete("Hello", **GREEDY)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the model's lock was not released by the closed stream"
    assert result["c"].usage.completion_tokens > 0


def test_a_cancelled_consumer_releases_the_model(tiny):
    async def go():
        async def consume():
            async for _ in tiny.astream("Hello", temperature=0.0, max_tokens=200):
                await asyncio.sleep(0.001)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.wait_for(tiny.acomplete("Hello", **GREEDY), timeout=60)

    assert run(go()).usage.completion_tokens > 0


def test_concurrent_async_calls_equal_sequential_results(tiny):
    prompts = ["Hello", "Once", "The sky"]
    expected = [tiny.complete(p, **GREEDY).text for p in prompts]

    async def go():
        return await asyncio.gather(*(tiny.acomplete(p, **GREEDY) for p in prompts))

    assert [c.text for c in run(go())] == expected


def test_async_errors_are_raised_at_the_first_step(tiny):
    async def first(**kwargs):
        async for chunk in tiny.astream("Hello", **kwargs):
            return chunk

    with pytest.raises(ValidationError, match="top_k"):
        run(first(top_k="many"))
    with pytest.raises(ContextOverflowError):
        run(tiny.acomplete(list(range(3, 300)), max_tokens=1))


def test_embed_batch_equals_embed(tiny):
    texts = ["Hello world", "A longer sentence about llamas.", "x"]
    batch = tiny.embed_batch(texts)
    assert batch.shape == (3, HP.n_embd) and batch.dtype == np.float32
    for row, text in zip(batch, texts):
        np.testing.assert_array_equal(row, tiny.embed(text))
    np.testing.assert_array_equal(run(tiny.aembed_batch(texts)), batch)
    assert tiny.embed_batch([]).shape == (0, HP.n_embd)


def test_load_shared_returns_one_model_per_file_and_options(tiny_path):
    a = ag.load_shared(tiny_path, n_ctx=128)
    b = ag.load_shared(str(tiny_path), n_ctx=128)
    c = ag.load_shared(tiny_path, n_ctx=64)
    assert a is b
    assert c is not a and c.n_ctx == 64
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is None  # the cache holds models weakly: an unused model is freed
    assert ag.load_shared(tiny_path, n_ctx=128).n_ctx == 128


def test_load_shared_keys_on_the_seed_and_prompt_format_too(tiny_path):
    a = ag.load_shared(tiny_path, n_ctx=128, seed=7, prompt_format="chatml")
    assert ag.load_shared(tiny_path, n_ctx=128, seed=7, prompt_format="chatml") is a
    assert a.defaults.seed == 7 and a.template.name == "chatml"
    assert ag.load_shared(tiny_path, n_ctx=128, seed=8, prompt_format="chatml") is not a
    assert ag.load_shared(tiny_path, n_ctx=128, seed=7) is not a


def test_adapter_fields_name_a_model_that_shared_model_makes(tiny_path, tiny):
    from pydantic import ConfigDict, create_model

    from airoboros_ggml.model import adapter_fields, shared_model

    Fields = create_model("Fields", __config__=ConfigDict(arbitrary_types_allowed=True), **adapter_fields())
    assert {"model_path", "model", "prompt_format", "n_ctx", "kv_type"} <= set(Fields.model_fields)
    values = Fields(model_path=str(tiny_path), n_ctx=128, prompt_format="chatml").model_dump()
    assert "model" not in values and values["n_batch"] is None
    loaded = shared_model(**values)
    assert loaded is ag.load_shared(tiny_path, n_ctx=128, prompt_format="chatml")
    assert shared_model(**Fields(model=tiny).model_dump(), model=tiny) is tiny
    with pytest.raises(ValueError, match="n_ctx"):
        shared_model(tiny, n_ctx=128)
    with pytest.raises(ValueError, match="model_path"):
        shared_model(None, None, n_ctx=128)


def test_load_shared_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.bin"
    with pytest.raises(ModelFormatError, match="missing.bin"):
        ag.load_shared(missing)
    with pytest.raises(ValidationError, match="n_ctx"):
        ag.load_shared(missing, n_ctx=-5)
