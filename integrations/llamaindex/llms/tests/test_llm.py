"""AiroborosGGML on SmolLM2: completion, streaming, chat, async, metadata, stops, per-call options, usage."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import ChatMessage
from llama_index.llms.airoboros_ggml import AiroborosGGML
from pydantic import ValidationError

import airoboros_ggml

PROMPT = "List the days of the week."

CONVERSATION = [
    ChatMessage(role="system", content="You answer in one word."),
    ChatMessage(role="user", content="Name a fruit."),
    ChatMessage(role="assistant", content="Apple."),
    ChatMessage(role="user", content="Name a color."),
    ChatMessage(role="assistant", content="Red."),
    ChatMessage(role="user", content="Name an animal."),
]
AIROBOROS_CONVERSATION = (
    "You answer in one word. USER: Name a fruit. ASSISTANT: Apple. USER: Name a color. ASSISTANT: Red. "
    "USER: Name an animal. ASSISTANT:"
)


def n_prompt_tokens(model, text: str) -> int:
    return len(model.tokenizer.tokenize(text, add_bos=True, special=True))


# ---------------------------------------------------------------- completion


def test_complete_is_the_cores_chat_answer_with_usage(llm, model):
    response = llm.complete(PROMPT)
    core = model.chat([{"role": "user", "content": PROMPT}], temperature=0, max_tokens=24)
    assert response.text == core.text and response.text
    usage = response.raw["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (core.usage.prompt_tokens, len(core.tokens))
    assert usage["prompt_tokens"] == n_prompt_tokens(model, llm.completion_to_prompt(PROMPT))
    assert response.raw["finish_reason"] == core.finish_reason


def test_completion_to_prompt_defaults_to_the_airoboros_template(llm, model):
    prompt = llm.completion_to_prompt("Hi")
    assert prompt.startswith("A chat between a curious user and an assistant.")
    assert prompt.endswith("legality or morality of the request. USER: Hi ASSISTANT:")
    assert prompt == model.format_chat([{"role": "user", "content": "Hi"}])


def test_stream_complete_deltas_join_to_the_text(llm):
    responses = list(llm.stream_complete(PROMPT))
    assert len(responses) > 1
    assert "".join(r.delta for r in responses) == responses[-1].text == llm.complete(PROMPT).text
    for previous, response in zip(responses, responses[1:]):
        assert response.text == previous.text + response.delta
    assert responses[-1].raw["usage"]["completion_tokens"] > 0


def test_formatted_prompt_is_passed_through(llm, model):
    raw = "The three primary colors are"
    response = llm.complete(raw, formatted=True)
    assert response.raw["usage"]["prompt_tokens"] == n_prompt_tokens(model, raw)
    assert response.text == model.complete(raw, temperature=0, max_tokens=24).text


def test_user_formatters_replace_the_template(model):
    llm = AiroborosGGML(
        model=model,
        temperature=0,
        max_tokens=8,
        completion_to_prompt=lambda prompt: f"Q: {prompt}\nA:",
        messages_to_prompt=lambda messages: "\n".join(f"{m.role.value}: {m.content}" for m in messages) + "\nbot:",
    )
    response = llm.complete("Why?")
    assert response.raw["usage"]["prompt_tokens"] == n_prompt_tokens(model, "Q: Why?\nA:")
    assert response.text == model.complete("Q: Why?\nA:", temperature=0, max_tokens=8).text
    chat = llm.chat([ChatMessage(role="user", content="Hi")])
    assert chat.raw["usage"]["prompt_tokens"] == n_prompt_tokens(model, "user: Hi\nbot:")


# ---------------------------------------------------------------- chat


def test_chat_sends_the_exact_airoboros_prompt(llm, model):
    assert llm.messages_to_prompt(CONVERSATION) == AIROBOROS_CONVERSATION
    response = llm.chat(CONVERSATION)
    assert response.message.role.value == "assistant"
    assert response.raw["usage"]["prompt_tokens"] == n_prompt_tokens(model, AIROBOROS_CONVERSATION)
    expected = model.complete(AIROBOROS_CONVERSATION, temperature=0, max_tokens=24, stop=["USER:"])
    assert response.message.content == expected.text.lstrip()


def test_stream_chat_deltas_join_to_the_chat_answer(llm):
    responses = list(llm.stream_chat(CONVERSATION))
    assert len(responses) > 1
    assert "".join(r.delta for r in responses) == responses[-1].message.content
    assert responses[-1].message.content == llm.chat(CONVERSATION).message.content
    assert responses[-1].raw["usage"]["prompt_tokens"] > 0


# ---------------------------------------------------------------- stops and per-call options


def test_stop_strings_cut_the_output(llm):
    full = llm.complete(PROMPT, max_tokens=40).text
    word = full.split()[len(full.split()) // 2]
    cut = full[: full.index(word)]
    response = llm.complete(PROMPT, max_tokens=40, stop=[word])
    assert response.text == cut and response.raw["finish_reason"] == "stop"
    assert "".join(r.delta for r in llm.stream_complete(PROMPT, max_tokens=40, stop=[word])) == cut
    with_instance_stop = AiroborosGGML(model=llm.model, temperature=0, max_tokens=40, stop=[word])
    assert with_instance_stop.complete(PROMPT).text == cut


def test_call_options_apply_to_that_call_only(model):
    llm = AiroborosGGML(model=model, temperature=0.9, top_k=10, max_tokens=6, stop=["zzz"])
    before = llm.model_dump()
    short = llm.complete(PROMPT, temperature=0, max_tokens=3, stop=[";"], top_k=1)
    assert short.raw["usage"]["completion_tokens"] <= 3
    assert llm.model_dump() == before
    assert (llm.temperature, llm.top_k, llm.max_tokens, llm.stop) == (0.9, 10, 6, ["zzz"])
    following = llm.complete(PROMPT, temperature=0)
    assert following.raw["usage"]["completion_tokens"] == 6 or following.raw["finish_reason"] == "stop"


def test_concurrent_calls_keep_their_own_options(llm):
    expected = {n: llm.complete(PROMPT, max_tokens=n).text for n in (2, 5)}
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip((2, 5), pool.map(lambda n: llm.complete(PROMPT, max_tokens=n), (2, 5))))
    assert {n: r.text for n, r in results.items()} == expected
    assert [results[n].raw["usage"]["completion_tokens"] for n in (2, 5)] == [2, 5]


def test_bad_options_are_refused(model):
    with pytest.raises(ValidationError, match="top_k"):
        AiroborosGGML(model=model, top_k=-1)
    llm = AiroborosGGML(model=model, max_tokens=4)
    with pytest.raises(ValidationError, match="temprature"):
        llm.complete(PROMPT, temprature=0.5)
    with pytest.raises(ValueError, match="model_path"):
        AiroborosGGML()
    with pytest.raises(ValueError, match="n_ctx"):
        AiroborosGGML(model=model, n_ctx=512)


# ---------------------------------------------------------------- metadata


def test_metadata_is_the_loaded_models(llm, n_ctx):
    metadata = llm.metadata
    assert metadata.context_window == n_ctx
    assert metadata.num_output == 24
    assert metadata.model_name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert metadata.is_chat_model
    assert AiroborosGGML(model=llm.model).metadata.num_output == -1  # max_tokens None: until EOS or full context


def test_model_path_loads_a_shared_model_with_its_options():
    llm = AiroborosGGML(model_path="smollm2", n_ctx=512)
    assert llm.metadata.context_window == 512
    assert llm.model is airoboros_ggml.load_shared("smollm2", n_ctx=512)
    assert AiroborosGGML(model_path="smollm2", n_ctx=512, temperature=0).model is llm.model


# ---------------------------------------------------------------- usage for TokenCountingHandler


def test_token_counting_handler_reads_the_models_usage(llm):
    handler = TokenCountingHandler(tokenizer=lambda text: text.split("e"))  # counts nothing like the model
    llm.callback_manager = CallbackManager([handler])
    response = llm.complete(PROMPT)
    usage = response.raw["usage"]
    assert handler.prompt_llm_token_count == usage["prompt_tokens"]
    assert handler.completion_llm_token_count == usage["completion_tokens"]
    handler.reset_counts()
    streamed = list(llm.stream_chat(CONVERSATION))[-1].raw["usage"]
    assert handler.prompt_llm_token_count == streamed["prompt_tokens"]
    assert handler.completion_llm_token_count == streamed["completion_tokens"]


# ---------------------------------------------------------------- async


class Ticker:
    """A coroutine that counts event-loop turns while the code under test awaits."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> "Ticker":
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()


def test_acomplete_does_not_block_the_event_loop(llm):
    async def run():
        async with Ticker() as ticker:
            start = ticker.ticks
            response = await llm.acomplete(PROMPT, max_tokens=32)
            return response, ticker.ticks - start

    response, during = asyncio.run(run())
    assert response.text == llm.complete(PROMPT, max_tokens=32).text
    assert response.raw["usage"]["completion_tokens"] > 0
    assert during >= 5  # a blocked loop would not have run the ticker at all while generating


def test_astream_complete_streams_incrementally(llm):
    async def run():
        ticks_at_chunk, responses = [], []
        async with Ticker() as ticker:
            async for response in await llm.astream_complete(PROMPT, max_tokens=32):
                ticks_at_chunk.append(ticker.ticks)
                responses.append(response)
        return ticks_at_chunk, responses

    ticks_at_chunk, responses = asyncio.run(run())
    assert "".join(r.delta for r in responses) == responses[-1].text == llm.complete(PROMPT, max_tokens=32).text
    assert len(responses) > 5
    # chunks arrived while the loop kept turning, not all at once after generation
    assert ticks_at_chunk[-1] - ticks_at_chunk[0] >= 3
    assert responses[-1].raw["usage"]["completion_tokens"] > 0


def test_achat_and_astream_chat_match_chat(llm):
    async def run():
        async with Ticker() as ticker:
            start = ticker.ticks
            response = await llm.achat(CONVERSATION)
            during = ticker.ticks - start
        chunks = [r async for r in await llm.astream_chat(CONVERSATION)]
        return response, during, chunks

    response, during, chunks = asyncio.run(run())
    expected = llm.chat(CONVERSATION).message.content
    assert response.message.content == expected
    assert during >= 3
    assert "".join(r.delta for r in chunks) == chunks[-1].message.content == expected
