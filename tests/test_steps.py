"""The generation layers: logits processors, the token selector, the step generator, text chunks."""

import math

import numpy as np
import pytest

import airoboros_ggml as ag
from airoboros_ggml import FileType
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.generation.options import SamplingOptions
from airoboros_ggml.generation.processors import (
    LogitBias,
    Penalties,
    apply_logit_bias,
    apply_penalties,
    make_logits_processors,
)
from airoboros_ggml.generation.sampling import make_sampler
from airoboros_ggml.generation.steps import Step, StepGenerator, TokenSelector
from airoboros_ggml.generation.text_stream import text_chunks
from airoboros_ggml.runtime import KVCache
from airoboros_ggml.tokenizer import Tokenizer
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

N_VOCAB = 300


# ------------------------------------------------------------------------------------------ processors


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"repeat_penalty": 1.3, "frequency_penalty": 0.2, "presence_penalty": 0.4, "repeat_last_n": 16},
        {"repeat_last_n": -1, "logit_bias": {5: -math.inf, 7: 2.5, 11: -1.0}},
        {"repeat_penalty": 1.0, "logit_bias": {3: 4.0}},
    ],
)
def test_processors_then_choose_equal_the_sampler_chain_as_llama_cpp_orders_it(extra):
    """Bias, then penalties over the window, then the chain — the order ``Sampler.sample`` always had."""
    rng = np.random.default_rng(0)
    opts = SamplingOptions(seed=3, temperature=0.9, **extra)
    processors = make_logits_processors(opts, N_VOCAB)
    chain, whole = make_sampler(opts, N_VOCAB), make_sampler(opts, N_VOCAB)
    for _ in range(20):
        logits = rng.standard_normal(N_VOCAB).astype(np.float32) * 3  # float32 (n_vocab,)
        history = list(rng.integers(0, N_VOCAB, int(rng.integers(0, 40))))
        expected = logits.copy()  # the fixed chain, spelled out with the pure functions
        bias = opts.logit_bias
        apply_logit_bias(expected, np.array(list(bias), dtype=np.int64), np.array(list(bias.values()), np.float32))
        n = opts.repeat_last_n
        window = np.array(history if n < 0 else history[-n:] if n else [], dtype=np.int64)
        apply_penalties(expected, window, opts.repeat_penalty, opts.frequency_penalty, opts.presence_penalty)
        x = logits.copy()
        for p in processors:
            x = p(history, x)
        np.testing.assert_array_equal(x, expected)
        assert chain.choose(x) == whole.sample(logits, history)


def test_neutral_options_make_no_processors_and_bad_bias_is_refused():
    assert make_logits_processors(SamplingOptions(repeat_penalty=1.0), N_VOCAB) == []
    assert make_logits_processors(SamplingOptions(repeat_last_n=0), N_VOCAB) == []
    kinds = [type(p) for p in make_logits_processors(SamplingOptions(logit_bias={1: 1.0}), N_VOCAB)]
    assert kinds == [LogitBias, Penalties]
    with pytest.raises(ValueError, match="out of range"):
        make_logits_processors(SamplingOptions(logit_bias={N_VOCAB: 1.0}), N_VOCAB)


# ------------------------------------------------------------------------------------------ selector and steps


class FakeModel:
    """``evaluate`` that records what it is given; the logits favour (last token + 1) mod n_vocab."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, tokens):
        self.calls.append(list(tokens))
        logits = np.zeros(N_VOCAB, dtype=np.float32)  # float32 (n_vocab,)
        logits[(tokens[-1] + 1) % N_VOCAB] = 5.0
        return logits


def test_selector_runs_processors_in_order_on_a_copy_then_the_sampler():
    seen = []

    def ban_even(tokens, logits):
        seen.append(("ban", list(tokens)))
        logits[::2] = -np.inf
        return logits

    def boost_ten(tokens, logits):
        seen.append(("boost", list(tokens)))
        assert logits[10] == -np.inf  # ran after ban_even
        logits[11] += 100.0
        return logits

    select = TokenSelector([1, 2], lambda x: int(np.argmax(x)), [ban_even, boost_ten])
    logits = np.zeros(N_VOCAB, dtype=np.float32)
    step = select(logits)
    assert step.token == 11 and step.logits is logits and not np.isinf(logits).any()  # model logits untouched
    assert select(logits).token == 11 and select.tokens == [1, 2, 11, 11]
    assert seen == [("ban", [1, 2]), ("boost", [1, 2]), ("ban", [1, 2, 11]), ("boost", [1, 2, 11])]


def test_step_generator_prefills_the_uncached_suffix_and_evaluates_each_token_lazily():
    model = FakeModel()
    steps = StepGenerator([5, 6, 7, 8], model, lambda x: int(np.argmax(x)), max_tokens=3, n_cached=2)
    assert model.calls == []
    first = steps.prefill()
    assert model.calls == [[7, 8]] and first[9] == 5.0
    out = list(steps)
    assert [s.token for s in out] == [9, 10, 11]
    assert model.calls == [[7, 8], [9], [10]]  # the last token is never evaluated
    assert out[1].logits[10] == 5.0 and steps.n_generated == 3
    np.testing.assert_allclose(np.exp(out[0].logprobs()).sum(), 1.0, rtol=1e-5)
    assert out[0].logprobs()[9] == out[0].logprobs().max()
    with pytest.raises(ValueError, match="must be evaluated"):
        StepGenerator([5, 6], model, int, n_cached=2)


def test_text_chunks_stop_pulling_steps_at_end_of_generation(llama_vocab_path):
    tok = Tokenizer.from_file(llama_vocab_path)
    ids = tok.tokenize("Hello world. USER: more", add_bos=False)  # "▁Hello": continuing text " Hello"
    pulled = []

    def steps():
        for t in [*ids, tok.eos_id]:
            pulled.append(t)
            yield Step(t, np.zeros(1, dtype=np.float32))

    chunks = list(text_chunks(steps(), tok, stop=["USER:"]))
    assert "".join(c.text for c in chunks) == " Hello world. "
    assert chunks[-1].finish_reason == "stop" and all(c.finish_reason is None for c in chunks[:-1])
    assert pulled == ids[: len(pulled)] and len(pulled) < len(ids)  # nothing pulled after the stop string
    pulled.clear()
    chunks = list(text_chunks(steps(), tok))
    assert "".join(c.text for c in chunks) == " Hello world. USER: more" and chunks[-1].finish_reason == "stop"
    assert sum(len(c.token_ids) for c in chunks) == len(ids)  # EOS ends generation and is in no chunk


def test_step_generator_on_a_model_yields_the_tokens_and_logits_of_complete(tmp_path):
    hp = tiny_hparams(n_ctx_train=128)
    tensors = random_llama_tensors(hp, FileType.ALL_F32, seed=1, scale=0.08)
    model = ag.load(write_gguf(tmp_path / "tiny.gguf", hp, tiny_vocab(hp.n_vocab), tensors), n_ctx=128)
    prompt = model.tokenizer.tokenize("hello there", add_bos=True)
    opts = SamplingOptions(temperature=0, max_tokens=6, logit_bias={2: -math.inf})
    done = model.complete(prompt, **opts.model_dump())
    cache = KVCache(model.hparams, 128, model.options.kv_type)

    def evaluate(tokens):
        return model._forward.logits(model._forward.hidden(np.asarray(tokens), cache)[-1:])[0]

    steps = list(
        StepGenerator(prompt, evaluate, make_sampler(opts, hp.n_vocab).choose, model.logits_processors(opts),
                      max_tokens=6)
    )
    assert [s.token for s in steps] == done.tokens
    every = model.logits(prompt + done.tokens)  # float32 (n_prompt + 6, n_vocab) from an empty cache
    for i, step in enumerate(steps):
        np.testing.assert_allclose(step.logits, every[len(prompt) - 1 + i], rtol=1e-4, atol=1e-4)
