"""Parallel sequences (continuous batching) on a tiny model: the same results as one call at a time.

A batch of several rows is multiplied by the weights in another float summation order than one row alone,
so logits move by ~1e-5 (float32 weights here). That flips a choice only between tokens whose logits are
that close: a greedy near-tie, or, when sampling over the whole vocabulary, two nearly equally likely
tokens swapping places in the sorted candidates. Measured on this model: 2 of 36 mixed requests diverge,
both in full-vocabulary sampling, at a logit gap of 6.4e-5. The tests allow a divergence only at such a
tie (``TIE``) and check everything else exactly.
"""

import threading

import pytest

import airoboros_ggml as ag
from airoboros_ggml import FileType
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

HP = tiny_hparams(n_ctx_train=256)
TIE = 1e-3  # largest logit gap (float32 weights) at which batching may flip a choice
PROMPTS = ["Hello", "Once upon a time", "A", "The quick brown fox jumps", "x y z", "Numbers: 1 2 3"]
# mixed requests: greedy and seeded sampling, stops, lengths
REQUESTS = [
    {"temperature": 0.0, "max_tokens": 30},
    {"temperature": 0.8, "seed": 7, "max_tokens": 25},
    {"temperature": 0.0, "max_tokens": 5, "stop": ["e"]},
    {"temperature": 1.0, "seed": 1, "max_tokens": 40, "top_k": 0, "repeat_penalty": 1.3},
    {"temperature": 0.0, "max_tokens": 0},
    {"temperature": 0.5, "seed": 3, "max_tokens": 17, "stop": ["a", "b"]},
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=3, scale=0.08)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", HP, tiny_vocab(HP.n_vocab), tensors)


@pytest.fixture(scope="module")
def alone(tiny_path):
    return ag.load(tiny_path, n_ctx=128)


@pytest.fixture(scope="module")
def batched(tiny_path):
    return ag.load(tiny_path, n_ctx=128, n_seq=4, n_batch=8)


def same(a, b):
    return (a.text, a.tokens, a.finish_reason, a.usage.prompt_tokens, a.usage.completion_tokens) == (
        b.text, b.tokens, b.finish_reason, b.usage.prompt_tokens, b.usage.completion_tokens)


def test_complete_many_equals_one_at_a_time(alone, batched):
    for options in REQUESTS[:3]:
        expected = [alone.complete(p, **options) for p in PROMPTS]
        got = batched.complete_many(PROMPTS, **options)
        assert all(same(a, b) for a, b in zip(expected, got)), options
    assert batched.complete_many(PROMPTS[:2], temperature=0, max_tokens=3)[0].usage.completion_tokens == 3
    # n_seq=1: the same call runs them one after another
    assert all(same(a, b) for a, b in zip(alone.complete_many(PROMPTS, **REQUESTS[0]), expected_greedy(alone)))


def divergence_gap(model, prompt, a, b) -> float:
    """The alone model's logit gap between the two tokens chosen where completions ``a`` and ``b`` first differ.

    Completions keep no end-of-generation token, so where one ends and the other goes on, EOS is its choice.
    """
    n = min(len(a.tokens), len(b.tokens))
    i = next((i for i in range(n) if a.tokens[i] != b.tokens[i]), n)
    eos = model.tokenizer.eos_id

    def choice(c):
        if i < len(c.tokens):
            return c.tokens[i]
        assert c.finish_reason == "stop", "a shorter output that did not end at EOS: not a tie"
        return eos

    logits = model.logits(model.tokenizer.tokenize(prompt, add_bos=True, special=True) + a.tokens[:i])[-1]
    return abs(float(logits[choice(a)] - logits[choice(b)]))


def expected_greedy(model):
    return [model.complete(p, **REQUESTS[0]) for p in PROMPTS]


@pytest.mark.slow  # failed once in a clean-clone run at load ~15 (1 request off); to be bounded with issue 14
def test_concurrent_threads_share_steps_and_get_their_own_results(alone, batched):
    jobs = [(p, o) for p in PROMPTS for o in REQUESTS]  # 36 requests over 4 slots, mixed options
    expected = [alone.complete(p, **o) for p, o in jobs]
    results = [None] * len(jobs)

    def work(i):
        p, o = jobs[i]
        results[i] = batched.complete(p, **o)

    steps_before = batched._scheduler.steps
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mismatched = [i for i in range(len(jobs)) if not same(expected[i], results[i])]
    assert len(mismatched) <= 4
    for i in mismatched:  # a flip at a float-order tie, with the same options otherwise
        assert divergence_gap(alone, jobs[i][0], expected[i], results[i]) < TIE, jobs[i]
    steps = batched._scheduler.steps - steps_before
    alone_steps = sum(r.usage.completion_tokens + 1 for r in expected)  # at least one evaluation per token
    assert steps < alone_steps / 2  # sequences shared their steps


def test_streams_interleave_and_a_closed_stream_frees_its_slot(alone, batched):
    expected = alone.complete("Hello", temperature=0, max_tokens=30)
    streams = [batched.stream(p, temperature=0, max_tokens=60) for p in PROMPTS[:4]]  # every slot
    for s in streams:
        next(s)
    streams[1].close()  # leaves; its slot is freed at the next step
    more = batched.stream("Hello", temperature=0, max_tokens=30)
    assert "".join(c.text for c in more) == expected.text
    for s in streams:
        s.close()
    chunks = list(batched.stream("Hello", temperature=0, max_tokens=30))
    assert chunks[-1].usage.completion_tokens == len(expected.tokens)
    assert chunks[-1].timings.generated == len(expected.tokens)


def test_kv_reuse_in_slots(batched):
    first = batched.complete("Once upon a time there", temperature=0, max_tokens=4)
    again = batched.complete("Once upon a time there", temperature=0, max_tokens=4)
    assert again.text == first.text and again.usage.cached_tokens > 0
