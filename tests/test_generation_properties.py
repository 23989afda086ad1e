"""Property tests of generation through the model: stop strings and UTF-8-safe streaming.

Stop strings are drawn from what the model generates without them, so they really occur: for any seed,
temperature and stop set, ``complete`` == the joined ``stream``, never contains a stop string, and equals
the stop-free text cut at the first stop (:func:`~airoboros_ggml.generation.stops.truncate_at_stop`).
"""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import airoboros_ggml as ag
from airoboros_ggml import FileType
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.generation.stops import truncate_at_stop
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab
from test_model import piece_id, scripted_vocab, text_ids, write_scripted_model

HP = tiny_hparams(n_ctx_train=256)
BYTE_IDS = range(3, 259)
EMOJI_TEXT = " hi😀中é"  # 😀 is 4 byte tokens, 中 3, é 2: characters split over tokens


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=7, scale=0.08)
    path = write_gguf(tmp_path_factory.mktemp("rand") / "r.gguf", HP, tiny_vocab(HP.n_vocab), tensors)
    return ag.load(path, n_ctx=128)


@pytest.fixture(scope="module")
def emoji_model(tmp_path_factory):
    script = [piece_id(scripted_vocab(), "\u2581hi"), *text_ids("😀中é")]
    return ag.load(write_scripted_model(tmp_path_factory.mktemp("emoji") / "e.gguf", script), n_ctx=128)


def _check_stops(model, prompt, kw, data):
    base = _base(model, prompt, kw)
    text = base.text
    stop_strategy = st.one_of(
        st.integers(0, max(0, len(text) - 1)).flatmap(
            lambda i: st.integers(1, 6).map(lambda n: text[i : i + n])
        ),
        st.text(alphabet="abcxyz 😀中é�", min_size=1, max_size=3),
    )
    stops = data.draw(st.lists(stop_strategy, min_size=1, max_size=3), label="stops")
    expected, cut = truncate_at_stop(text, stops)

    done = model.complete(prompt, stop=stops, **kw)
    chunks = list(model.stream(prompt, stop=stops, **kw))
    assert "".join(c.text for c in chunks) == done.text
    assert [t for c in chunks for t in c.token_ids] == done.tokens
    assert done.text == expected
    assert not any(s in done.text for s in stops if s)
    assert done.tokens == base.tokens[: len(done.tokens)]
    assert done.finish_reason == ("stop" if cut else base.finish_reason)
    assert chunks[-1].finish_reason == done.finish_reason
    assert all(c.finish_reason is None for c in chunks[:-1])


_bases: dict = {}


def _base(model, prompt, kw):
    key = (str(model.file.path), prompt, tuple(sorted((k, str(v)) for k, v in kw.items())))
    if key not in _bases:
        _bases[key] = model.complete(prompt, **kw)
    return _bases[key]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 5),
    temperature=st.sampled_from([0.0, 0.7, 1.2, 2.0]),
    words_only=st.booleans(),
    prompt=st.sampled_from(["once upon a time", "the sea"]),
    data=st.data(),
)
def test_stop_strings_random_model(random_model, seed, temperature, words_only, prompt, data):
    kw = {"seed": seed, "temperature": temperature, "max_tokens": 16}
    if words_only:  # readable text; otherwise random byte tokens also produce U+FFFD and split characters
        kw["logit_bias"] = {i: -math.inf for i in BYTE_IDS}
    _check_stops(random_model, prompt, kw, data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_tokens=st.integers(1, 30), temperature=st.sampled_from([0.0, 0.8]), data=st.data())
def test_stop_strings_split_characters(emoji_model, max_tokens, temperature, data):
    kw = {"seed": 1, "temperature": temperature, "max_tokens": max_tokens}
    _check_stops(emoji_model, "there", kw, data)


def test_emoji_and_cjk_stream_never_breaks_characters(emoji_model):
    n_cycle = 1 + len("😀中é".encode())
    boundaries = {0, 1, 5, 8}  # token counts (mod n_cycle) that end on a character boundary
    full = EMOJI_TEXT * 3
    for max_tokens in range(1, 2 * n_cycle + 2):
        chunks = list(emoji_model.stream("there", temperature=0, max_tokens=max_tokens))
        for c in chunks:
            c.text.encode("utf-8")  # no lone surrogates
        assert not any("\ufffd" in c.text for c in chunks[:-1])
        joined = "".join(c.text for c in chunks)
        assert joined == emoji_model.complete("there", temperature=0, max_tokens=max_tokens).text
        if max_tokens % n_cycle in boundaries:
            assert "\ufffd" not in joined and full.startswith(joined)
            assert len(joined.encode()) == sum(len(emoji_model.tokenizer.token_to_bytes(t))
                                              for c in chunks for t in c.token_ids)
        else:  # cut inside a character by max_tokens: only the incomplete tail is replaced
            assert full.startswith(joined.rstrip("\ufffd")) and joined.endswith("\ufffd")
    chunks = list(emoji_model.stream("there", temperature=0, max_tokens=n_cycle))
    texts = [c.text for c in chunks if c.text]
    assert texts == [" hi", "😀", "中", "é"]
    assert [len(c.token_ids) for c in chunks if c.text] == [1, 4, 3, 2]
