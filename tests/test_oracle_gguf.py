"""Files our ``write_gguf`` makes, read by gguf-py (the reference GGUF reader), not by us (issue 15).

Our reader and writer could share a mistake (a key name, a value type, an offset rule); gguf-py's
``GGUFReader`` and ``gguf.quants`` cannot. For every GGUF version, alignment and tensor type: the keys carry
the values we meant under gguf-py's key names, the tensors have our types, shapes and bytes, and gguf-py
dequantizes them to what our dequantizers give.
"""

import dataclasses
import itertools

import gguf
import numpy as np
import pytest

from airoboros_ggml import FileType
from airoboros_ggml.formats import open_model_file, write_gguf
from airoboros_ggml.formats.gguf import ValueType
from airoboros_ggml.formats.writer import gguf_metadata
from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import dequantize
from airoboros_ggml.tools.synthetic import random_llama_tensors, random_raw_tensor, tiny_hparams, tiny_vocab

WEIGHT_TYPES = [GGMLType[n] for n in "F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K".split()]
K = gguf.Keys


def _contents(reader, key):
    return reader.fields[key].contents()


def _expected_llama_keys(hp, vocab):
    """What the keys gguf-py names must hold for these hyperparameters and vocabulary."""
    llm = {
        K.LLM.CONTEXT_LENGTH: hp.n_ctx_train, K.LLM.EMBEDDING_LENGTH: hp.n_embd, K.LLM.BLOCK_COUNT: hp.n_layer,
        K.LLM.FEED_FORWARD_LENGTH: hp.n_ff, K.LLM.VOCAB_SIZE: hp.n_vocab, K.Attention.HEAD_COUNT: hp.n_head,
        K.Attention.HEAD_COUNT_KV: hp.n_head_kv, K.Rope.DIMENSION_COUNT: hp.n_rot,
    }
    out = {key.format(arch="llama"): value for key, value in llm.items()}
    out |= {
        K.General.ARCHITECTURE: "llama", K.General.FILE_TYPE: int(hp.ftype), K.Tokenizer.MODEL: vocab.model,
        K.Tokenizer.BOS_ID: vocab.bos_id, K.Tokenizer.EOS_ID: vocab.eos_id,
        K.Tokenizer.ADD_BOS: vocab.add_bos, K.Tokenizer.ADD_EOS: vocab.add_eos,
        K.Tokenizer.ADD_PREFIX: vocab.add_space_prefix,
        K.Tokenizer.LIST: [p.decode() for p in vocab.pieces],
        K.Tokenizer.TOKEN_TYPE: [int(t) for t in vocab.token_types],
    }
    if vocab.merges:
        out[K.Tokenizer.MERGES] = list(vocab.merges)
    if vocab.pre is not None:
        out[K.Tokenizer.PRE] = vocab.pre
    if vocab.chat_template is not None:
        out[K.Tokenizer.CHAT_TEMPLATE] = vocab.chat_template
    return out


def _expected_float_keys(hp):
    out = {K.Attention.LAYERNORM_RMS_EPS: hp.rms_norm_eps, K.Rope.FREQ_BASE: hp.rope_freq_base}
    if hp.rope_freq_scale != 1.0:
        out[K.Rope.SCALING_FACTOR] = 1.0 / hp.rope_freq_scale
    return {key.format(arch="llama"): value for key, value in out.items()}


V = gguf.GGUFValueType
NUMPY_TYPES = {
    np.uint8: V.UINT8, np.int8: V.INT8, np.uint16: V.UINT16, np.int16: V.INT16, np.uint32: V.UINT32,
    np.int32: V.INT32, np.uint64: V.UINT64, np.int64: V.INT64, np.float32: V.FLOAT32, np.float64: V.FLOAT64,
    np.bool_: V.BOOL,
}


def _gguf_py_type(value):
    """gguf-py's value type (then the element type, for arrays) of a value as ``write_gguf`` documents it."""
    if isinstance(value, tuple):  # (type, value), or (element type, list of strings)
        vtype, inner = value
        return [V.ARRAY, V(vtype)] if isinstance(inner, list) else [V(vtype)]
    if isinstance(value, np.ndarray):
        return [V.ARRAY, NUMPY_TYPES[value.dtype.type]]
    if isinstance(value, str):
        return [V.STRING]
    if isinstance(value, bool):
        return [V.BOOL]
    if isinstance(value, int):
        return [V.INT32 if -(1 << 31) <= value < 1 << 31 else V.UINT64]
    assert isinstance(value, float)
    return [V.FLOAT32]


def _check_with_gguf_py(path, hp, vocab, tensors, version, alignment, extra=None):
    reader = gguf.GGUFReader(path)
    assert _contents(reader, "GGUF.version") == version

    # every key we wrote, with the value type we meant; the llama keys under gguf-py's names
    written = gguf_metadata(hp, vocab) | (extra or {})
    if alignment != 32:
        written["general.alignment"] = (ValueType.UINT32, alignment)
    assert set(written) == {k for k in reader.fields if not k.startswith("GGUF.")}
    for key, value in written.items():
        assert reader.fields[key].types == _gguf_py_type(value), key
    for key, value in _expected_llama_keys(hp, vocab).items():
        assert _contents(reader, key) == value, key
    for key, value in _expected_float_keys(hp).items():
        assert _contents(reader, key) == pytest.approx(value, rel=1e-7), key
    np.testing.assert_array_equal(np.asarray(_contents(reader, K.Tokenizer.SCORES), np.float32), vocab.scores)
    assert reader.alignment == alignment

    # tensors: names, types, shapes, bytes, and gguf-py's dequantization
    assert [t.name for t in reader.tensors] == list(tensors)
    dequantized = set()  # one tensor of each type is enough for the dequantizers
    for t in reader.tensors:
        raw = tensors[t.name]
        assert GGMLType(int(t.tensor_type)) == raw.ggml_type, t.name
        assert tuple(int(d) for d in reversed(t.shape)) == raw.shape, t.name
        assert t.data_offset % alignment == 0
        assert t.data.view(np.uint8).tobytes() == raw.encoded().tobytes(), t.name
        if raw.ggml_type in dequantized:
            continue
        dequantized.add(raw.ggml_type)
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(raw.shape)  # float32 (rows, n)
        np.testing.assert_array_equal(theirs, dequantize(raw.encoded(), raw.ggml_type, raw.shape), err_msg=t.name)
    return reader


def test_every_tensor_type_reads_in_gguf_py(tmp_path):
    # one file, its matrices typed round-robin over every weight type (norms stay F32)
    hp = tiny_hparams(ftype=FileType.MOSTLY_Q4_K_M)
    vocab = tiny_vocab(hp.n_vocab)
    rng = np.random.default_rng(15)
    tensors = random_llama_tensors(hp, FileType.ALL_F32, quantize=False)
    matrices = [name for name, t in tensors.items() if len(t.shape) == 2]
    for name, t in zip(matrices, itertools.cycle(WEIGHT_TYPES[1:])):
        tensors[name] = random_raw_tensor(t, tensors[name].shape, rng)
    assert {t.ggml_type for t in tensors.values()} == set(WEIGHT_TYPES)
    _check_with_gguf_py(write_gguf(tmp_path / "m.gguf", hp, vocab, tensors), hp, vocab, tensors, 3, 32)


@pytest.mark.parametrize("version,alignment", [(2, 32), (3, 32), (2, 1), (3, 1), (3, 8), (3, 64), (2, 256), (3, 4096)])
def test_versions_and_alignments_read_in_gguf_py(tmp_path, version, alignment):
    # non-default hparams (RoPE scaling, eps, context), tied embeddings, quantized data of odd sizes
    hp = tiny_hparams(rope_freq_base=1e6, rope_freq_scale=0.25, rms_norm_eps=1e-6, n_ctx_train=16384,
                      ftype=FileType.MOSTLY_Q5_1)
    vocab = tiny_vocab(hp.n_vocab)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q5_1, quantize=False, tied=True, seed=version * alignment)
    path = write_gguf(tmp_path / "m.gguf", hp, vocab, tensors, version=version, alignment=alignment)
    _check_with_gguf_py(path, hp, vocab, tensors, version, alignment)


def test_bpe_vocabulary_and_extra_metadata_read_in_gguf_py(smollm2, tmp_path):
    # a byte-level BPE vocabulary (merges, pre-tokenizer, chat template) and every kind of extra value
    full = open_model_file(smollm2).vocab  # SmolLM2's, cut to 1024 pieces and 600 merges (gguf-py reads slowly)
    vocab = dataclasses.replace(full, pieces=full.pieces[:1024], scores=full.scores[:1024],
                                token_types=full.token_types[:1024], merges=full.merges[:600])
    hp = tiny_hparams(n_vocab=vocab.n_vocab)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q8_0, quantize=False)
    extra = {
        "test.str": "héllo", "test.bool": True, "test.int": -7, "test.big": 1 << 40, "test.float": 0.5,
        "test.u8": (ValueType.UINT8, 200), "test.i16": (ValueType.INT16, -300), "test.f64": (ValueType.FLOAT64, 0.1),
        "test.i64_array": np.array([-1, 2, 1 << 40], dtype=np.int64), "test.bools": np.array([True, False]),
        "test.strings": (ValueType.STRING, ["a", "", "ü"]),
    }
    path = write_gguf(tmp_path / "bpe.gguf", hp, vocab, tensors, metadata=extra)
    reader = _check_with_gguf_py(path, hp, vocab, tensors, 3, 32, extra)
    assert _contents(reader, K.Tokenizer.PRE) == "smollm" and len(_contents(reader, K.Tokenizer.MERGES)) == 600
    assert "<|im_start|>" in _contents(reader, K.Tokenizer.CHAT_TEMPLATE)
    for key, value in extra.items():
        inner = value[1] if isinstance(value, tuple) else value
        expected = inner.tolist() if isinstance(inner, np.ndarray) else inner
        assert _contents(reader, key) == expected, key
