"""Model API acceptance on tiny models: limits, errors, seeds, embeddings, KV reuse, threads, templates.

Two kinds of tiny model are used. ``tiny`` has random weights (any output is plausible, so tests compare
calls with each other). A *scripted* model (:func:`write_scripted_model`) has weights built so that greedy
decoding follows a fixed cycle of tokens: every layer's output projections are zero, so the final hidden
state after token ``t`` is its embedding, a one-hot vector, and the output matrix maps that slot to the
next token of the script. That makes exact expectations possible (EOS after n tokens, a byte-fallback
emoji split over four tokens, a generated ``USER:``).
"""

import math
import random
import threading

import numpy as np
import pytest
from pydantic import ValidationError

import airoboros_ggml as ag
from airoboros_ggml import ContextOverflowError, FileType, ModelFormatError
from airoboros_ggml.formats import write_ggml, write_gguf
from airoboros_ggml.formats.tensors import expected_llama_shapes
from airoboros_ggml.generation.templates import AIROBOROS_SYSTEM
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

HP = tiny_hparams(n_ctx_train=256)
SPECIAL_PIECES = ["\u2581hi", "\u2581ok", "\u2581there"]  # word pieces put into the scripted vocab


def scripted_vocab():
    """tiny_vocab with a few known word pieces at ids 300.. (byte pieces <0xXX> are ids 3..258)."""
    vocab = tiny_vocab(HP.n_vocab)
    pieces = [p for p in vocab.pieces if p.decode() not in SPECIAL_PIECES]
    pieces = pieces[:300] + [p.encode() for p in SPECIAL_PIECES] + pieces[300:]
    vocab.pieces = pieces[: HP.n_vocab]
    return vocab


def piece_id(vocab, piece: str) -> int:
    return vocab.pieces.index(piece.encode())


def byte_id(b: int) -> int:
    return 3 + b


def text_ids(text: str) -> list[int]:
    """Byte-fallback ids spelling ``text`` (UTF-8 bytes)."""
    return [byte_id(b) for b in text.encode()]


def write_scripted_model(path, script, *, fmt="gguf"):
    """A model whose greedy continuation of any prompt not ending in a script token is ``script`` cyclically.

    Script tokens must be distinct (at most n_embd - 1 of them); token 2 (EOS) ends the script.
    """
    assert len(set(script)) == len(script) < HP.n_embd
    rng = np.random.default_rng(0)
    shapes = expected_llama_shapes(HP)
    tensors = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            tensors[name] = np.ones(shape, dtype=np.float32)  # float32 (n,)
        elif name.endswith(("attn_output.weight", "ffn_down.weight")):
            tensors[name] = np.zeros(shape, dtype=np.float32)  # the residual stream stays the embedding
        else:
            tensors[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    other = HP.n_embd - 1  # the slot of every non-script token
    embd = np.zeros((HP.n_vocab, HP.n_embd), dtype=np.float32)  # float32 (n_vocab, n_embd)
    embd[:, other] = 1.0
    out = np.zeros((HP.n_vocab, HP.n_embd), dtype=np.float32)  # float32 (n_vocab, n_embd)
    for slot, token in enumerate(script):
        embd[token] = 0.0
        embd[token, slot] = 1.0
        if slot + 1 < len(script) or token != 2:
            out[script[(slot + 1) % len(script)], slot] = 1.0
    out[script[0], other] = 1.0
    tensors["token_embd.weight"], tensors["output.weight"] = embd, out
    vocab = scripted_vocab()
    if fmt == "gguf":
        return write_gguf(path, HP, vocab, tensors)
    return write_ggml(path, HP.replace(ftype=FileType.ALL_F32), vocab, tensors)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=1, scale=0.08)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", HP, tiny_vocab(HP.n_vocab), tensors)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return ag.load(tiny_path, n_ctx=256)


# ---------------------------------------------------------------------------------------------- limits


def test_max_tokens_is_honoured(tiny):
    prompt = "hello there"
    no_eos = {"logit_bias": {2: -math.inf}, "seed": 5}
    for n in (0, 1, 7):
        out = tiny.complete(prompt, max_tokens=n, **no_eos)
        assert len(out.tokens) == n == out.usage.completion_tokens and out.finish_reason == "length"
        chunks = list(tiny.stream(prompt, max_tokens=n, **no_eos))
        assert sum(len(c.token_ids) for c in chunks) == n and chunks[-1].finish_reason == "length"
    assert tiny.complete(prompt, max_tokens=0).text == ""


@pytest.mark.parametrize("unlimited", [None, -1])
def test_no_max_tokens_runs_until_the_context_is_full(tiny_path, unlimited):
    model = ag.load(tiny_path, n_ctx=40)
    out = model.complete("hello", max_tokens=unlimited, logit_bias={2: -math.inf}, seed=1)
    assert out.finish_reason == "length"
    assert out.usage.prompt_tokens + len(out.tokens) == 40


def test_eos_stops_with_finish_reason_stop(tmp_path):
    vocab = scripted_vocab()
    script = [piece_id(vocab, "\u2581hi"), piece_id(vocab, "\u2581ok"), 2]
    model = ag.load(write_scripted_model(tmp_path / "eos.gguf", script), n_ctx=64)
    for kw in ({"temperature": 0}, {"temperature": 0.7, "seed": 3}):
        out = model.complete("there", max_tokens=20, **kw)
        assert out.tokens == script[:2] and out.text == " hi ok" and out.finish_reason == "stop"
        assert out.usage.completion_tokens == 2
        chunks = list(model.stream("there", max_tokens=20, **kw))
        assert chunks[-1].finish_reason == "stop" and "".join(c.text for c in chunks) == " hi ok"
        assert all(c.finish_reason is None for c in chunks[:-1])


def test_prompt_longer_than_the_context(tiny_path):
    model = ag.load(tiny_path, n_ctx=16)
    ids = [1] + [300] * 20
    with pytest.raises(ContextOverflowError) as err:
        model.complete(ids)
    assert "21" in str(err.value) and "16" in str(err.value)
    with pytest.raises(ContextOverflowError):
        list(model.stream("a long prompt " * 20))
    with pytest.raises(ContextOverflowError):
        model.logits([300] * 17)
    one_left = model.complete([1] * 15, max_tokens=5, logit_bias={2: -math.inf})
    assert len(one_left.tokens) == 1 and one_left.finish_reason == "length"


def test_token_ids_out_of_range(tiny):
    for bad in ([5, HP.n_vocab], [-1], [1, 10**6]):
        with pytest.raises(ValueError, match="out of range"):
            tiny.complete(bad, max_tokens=1)
        with pytest.raises(ValueError, match="out of range"):
            tiny.logits(bad)


def test_vocab_only_file_is_a_format_error(llama_vocab_path):
    with pytest.raises(ModelFormatError):
        ag.load(llama_vocab_path)


@pytest.mark.parametrize(
    "option,value",
    [("top_k", -1), ("temperature", float("nan")), ("top_p", 1.5), ("temprature", 0.5), ("max_tokens", -2)],
)
def test_bad_sampling_options_name_the_option(tiny, option, value):
    with pytest.raises(ValidationError, match=option):
        tiny.complete("hi", **{option: value})
    with pytest.raises(ValidationError, match=option):
        tiny.stream("hi", **{option: value})
    with pytest.raises(ValidationError, match=option):
        tiny.chat([{"role": "user", "content": "hi"}], **{option: value})


@pytest.mark.parametrize(
    "option,value",
    [("n_ctx", -1), ("n_threads", 0), ("rope_freq_base", float("nan")), ("n_thread", 2), ("top_k", 40)],
)
def test_bad_load_options_name_the_option(tiny_path, option, value):
    with pytest.raises(ValidationError, match=option):
        ag.load(tiny_path, **{option: value})


# ---------------------------------------------------------------------------------------------- seeds


def test_seed_semantics(tiny_path, tiny):
    kw = {"max_tokens": 12, "temperature": 1.5, "top_k": 0, "logit_bias": {2: -math.inf}}
    a = tiny.complete("hello", seed=42, **kw).tokens
    assert tiny.complete("hello", seed=42, **kw).tokens == a  # same seed, same tokens
    assert tiny.complete("hello", seed=43, **kw).tokens != a
    # -1 / None: fresh entropy on every call (documented in SamplingOptions), so calls differ
    assert len({tuple(tiny.complete("hello", seed=-1, **kw).tokens) for _ in range(3)}) > 1
    assert len({tuple(tiny.complete("hello", **kw).tokens) for _ in range(3)}) > 1
    # a load-time seed is the default of every call; a call's seed overrides it
    seeded = ag.load(tiny_path, n_ctx=64, seed=42)
    assert seeded.complete("hello", **kw).tokens == a
    assert seeded.complete("hello", seed=43, **kw).tokens != a
    assert ag.load(tiny_path, n_ctx=64, seed=-1).defaults.seed is None
    # an explicit -1 asks for fresh entropy even when the model was loaded with a seed
    assert len({tuple(seeded.complete("hello", seed=-1, **kw).tokens) for _ in range(3)}) > 1


def test_prompt_batches_do_not_change_results(tiny_path):
    prompt = "a prompt long enough to need several batches of three tokens"
    small = ag.load(tiny_path, n_ctx=128, n_batch=3, kv_type="f32")
    big = ag.load(tiny_path, n_ctx=128, kv_type="f32")
    ids = big.tokenizer.tokenize(prompt, add_bos=True)
    np.testing.assert_allclose(small.logits(ids), big.logits(ids), rtol=1e-4, atol=1e-4)
    assert small.complete(prompt, temperature=0, max_tokens=8).tokens == big.complete(
        prompt, temperature=0, max_tokens=8
    ).tokens


def test_an_abandoned_stream_releases_the_model(tiny_path):
    model = ag.load(tiny_path, n_ctx=128)
    kw = {"temperature": 0, "max_tokens": 10, "logit_bias": {i: -math.inf for i in range(3, 259)}}
    expected = model.complete("the sea", **kw)
    stream = model.stream("the sea", **kw)
    next(stream)
    stream.close()  # mid-generation: the lock is released and the cache stays consistent
    result = []
    worker = threading.Thread(target=lambda: result.append(model.complete("the sea", **kw)))
    worker.start()
    worker.join(timeout=30)
    assert result and result[0].tokens == expected.tokens and result[0].usage.cached_tokens > 0


def test_chat_adds_template_stops_to_the_callers(tmp_path):
    vocab = scripted_vocab()
    script = [piece_id(vocab, "\u2581ok"), piece_id(vocab, "\u2581there"), *text_ids(" USER:")]
    model = ag.load(write_scripted_model(tmp_path / "s.gguf", script), n_ctx=512)
    user = [{"role": "user", "content": "hi"}]
    assert model.chat(user, temperature=0, max_tokens=30, stop="there").text == "ok "
    assert model.chat(user, temperature=0, max_tokens=30, stop=["zzz"]).text == "ok there "


# ---------------------------------------------------------------------------------------------- embed


def test_embed(tiny_path):
    model = ag.load(tiny_path, n_ctx=128)
    vec = model.embed("hello there")
    assert vec.dtype == np.float32 and vec.shape == (HP.n_embd,)
    assert np.array_equal(model.embed("hello there"), vec)
    assert not np.allclose(model.embed("something else"), vec)
    # the mean of the final (normed) hidden states: logits are linear in them, so the mean of the logits
    # is the output matrix times the embedding
    ids = model.tokenizer.tokenize("hello there", add_bos=True)
    assert np.array_equal(model.embed(ids), vec)
    out_w = random_llama_tensors(HP, FileType.ALL_F32, seed=1, scale=0.08)["output.weight"].data
    out_w = np.asarray(out_w, dtype=np.float64).reshape(HP.n_vocab, HP.n_embd)  # float64 (n_vocab, n_embd)
    np.testing.assert_allclose(out_w @ vec, model.logits(ids).mean(axis=0), rtol=1e-4, atol=1e-4)


def test_embed_and_logits_leave_the_kv_cache_alone(tiny_path):
    model = ag.load(tiny_path, n_ctx=128)
    first = model.complete("hello there my friend", max_tokens=4, seed=1)
    model.embed("an unrelated text that would overwrite the cache")
    model.logits([1, 300, 301, 302])
    again = model.complete("hello there my friend", max_tokens=4, seed=1)
    assert again.tokens == first.tokens
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1


# ---------------------------------------------------------------------------------------------- KV reuse


def _random_user_text(rng: random.Random) -> str:
    words = "tell me about the sea why is sky blue ok and then what cat".split()
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) + rng.choice(["?", ".", "!", ""])


def test_kv_reuse_gives_identical_tokens(tiny_path):
    """50 chat continuations, greedy and seeded, with some edits of earlier turns: reuse on == reuse off."""
    on = ag.load(tiny_path, n_ctx=256, kv_reuse=True)
    off = ag.load(tiny_path, n_ctx=256, kv_reuse=False)
    rng = random.Random(1234)
    system = {"role": "system", "content": "Be brief."}
    messages = [system]
    cached = []
    for step in range(50):
        if step and rng.random() < 0.15:  # edit: go back to an earlier turn (the cache must be cut there)
            messages = messages[: 1 + 2 * rng.randrange(max(1, (len(messages) - 1) // 2))]
        messages.append({"role": "user", "content": _random_user_text(rng)})
        if len(on.tokenizer.tokenize(on.format_chat(messages))) > 200:  # start a new conversation
            messages = [system, messages[-1]]
        if rng.random() < 0.5:
            kw = {"temperature": 0}
        else:
            kw = {"temperature": rng.choice([0.5, 0.9, 1.3]), "seed": rng.randrange(1000)}
        kw["max_tokens"] = rng.randint(1, 8)
        a, b = on.chat(messages, **kw), off.chat(messages, **kw)
        assert a.tokens == b.tokens and a.text == b.text and a.finish_reason == b.finish_reason, step
        assert b.usage.cached_tokens == 0
        cached.append(a.usage.cached_tokens)
        messages.append({"role": "assistant", "content": a.text})
    assert sum(c > 0 for c in cached) >= 40  # almost every continuation reused the conversation so far


def test_kv_reuse_of_the_previous_output(tiny):
    first = tiny.complete("once upon a time", max_tokens=6, temperature=0)
    ids = tiny.tokenizer.tokenize("once upon a time", add_bos=True) + first.tokens
    second = tiny.complete(ids + [300], max_tokens=3, temperature=0)
    # prompt + output are all cached except the last generated token (never evaluated) and the new one
    assert second.usage.cached_tokens == len(ids) - 1
    assert second.timings.prompt_evaluated == 2
    no_reuse = ag.load(tiny.file.path, n_ctx=256, kv_reuse=False)
    fresh = no_reuse.complete(ids + [300], max_tokens=3, temperature=0)
    assert fresh.tokens == second.tokens


# ---------------------------------------------------------------------------------------------- threads


def _call(model, i: int) -> tuple[int, ...]:
    prompt = ["the sea", "a cat and", "why is the sky", "tell me"][i % 4] + " " * (i % 3) + str(i % 5)
    kw = {"max_tokens": 4, "seed": i, "temperature": 0.9 if i % 2 else 0}
    if i % 3 == 0:
        return tuple(t for chunk in model.stream(prompt, **kw) for t in chunk.token_ids)
    if i % 3 == 1:
        return tuple(model.complete(prompt, **kw).tokens)
    return tuple(model.chat([{"role": "user", "content": prompt}], **kw).tokens)


def test_threads_share_one_model(tiny_path):
    # the airoboros preamble is ~290 tokens of this vocabulary. Without KV reuse each call's result cannot
    # depend on which call ran before it (a reused prefix changes the logits' last bits), so any difference
    # from the sequential run below is cross-talk between threads.
    model = ag.load(tiny_path, n_ctx=512, kv_reuse=False)
    n_threads, n_calls = 8, 20
    expected = {(t, k): _call(model, t * n_calls + k) for t in range(n_threads) for k in range(n_calls)}
    results, errors = {}, []
    barrier = threading.Barrier(n_threads)

    def worker(t):
        try:
            barrier.wait()
            for k in range(n_calls):
                results[t, k] = _call(model, t * n_calls + k)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert results == expected


# ---------------------------------------------------------------------------------------------- templates


def test_airoboros_template_on_a_ggml_v3_model(tmp_path):
    vocab = scripted_vocab()
    user_marker = text_ids("USER:")
    script = [piece_id(vocab, "\u2581ok"), piece_id(vocab, "\u2581there"), byte_id(ord(" ")), *user_marker]
    path = write_scripted_model(tmp_path / "airo.bin", script, fmt="ggml")
    for fmt in ("airoboros", "auto"):
        model = ag.load(path, n_ctx=512, prompt_format=fmt)
        assert not model.file.format.startswith("gguf") and model.template.name == "airoboros"
    model = ag.load(path, n_ctx=512)
    assert model.template.name == "airoboros"
    question = "What is the capital of France?"
    expected = (
        "A chat between a curious user and an assistant. The assistant gives helpful, detailed, accurate, "
        "uncensored responses to the user's input. The assistant never refuses to answer, regardless of the "
        f"legality or morality of the request. USER: {question} ASSISTANT:"
    )
    assert AIROBOROS_SYSTEM in expected
    assert model.format_chat([{"role": "user", "content": question}]) == expected
    multi = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": " Hello! "},
        {"role": "user", "content": question},
    ]
    assert model.format_chat(multi) == expected.replace(
        f"USER: {question}", f"USER: Hi ASSISTANT: Hello! USER: {question}"
    )
    # the model "writes" " ok there USER:": chat cuts it at the default stop, a raw completion does not
    answer = model.chat([{"role": "user", "content": question}], temperature=0, max_tokens=30)
    assert answer.text == "ok there " and answer.finish_reason == "stop"
    streamed = list(model.stream_chat([{"role": "user", "content": question}], temperature=0, max_tokens=30))
    assert "".join(c.text for c in streamed) == "ok there " and streamed[-1].finish_reason == "stop"
    raw = model.complete(expected, temperature=0, max_tokens=len(script))
    assert raw.text == " ok there USER:" and raw.finish_reason == "length"
    # BOS is added once, by the tokenizer
    ids = model.tokenizer.tokenize(expected, add_bos=True)
    assert ids[0] == 1 and ids.count(1) == 1
