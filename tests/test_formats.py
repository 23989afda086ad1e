import dataclasses
import struct

import numpy as np
import pytest

from airoboros_ggml import FileType, GGMLType, ModelFormatError
from airoboros_ggml.formats import RawTensor, gguf_to_ggml, open_model_file, write_ggml, write_gguf
from airoboros_ggml.ggml_types import SEED_FILE_TYPES
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab
from airoboros_ggml.vocab import to_piece_encoding

ALL_FILE_TYPES = (*SEED_FILE_TYPES, FileType.MOSTLY_F16, FileType.ALL_F32)


def _assert_same_vocab(read, written, encoding):
    assert read.pieces == to_piece_encoding(written, encoding)
    np.testing.assert_array_equal(read.scores, written.scores)
    np.testing.assert_array_equal(read.token_types, written.token_types)
    assert (read.bos_id, read.eos_id, read.unk_id) == (written.bos_id, written.eos_id, written.unk_id)


def _assert_same_tensors(model_file, tensors, rename=lambda n: n):
    assert set(model_file.tensors) == {rename(n) for n in tensors}
    for name, raw in tensors.items():
        info = model_file.tensors[rename(name)]
        assert info.ggml_type == raw.ggml_type
        assert info.shape == raw.shape
        np.testing.assert_array_equal(info.data, raw.encoded())
        assert not info.data.flags.writeable


@pytest.mark.parametrize("ftype", ALL_FILE_TYPES, ids=lambda f: f.label)
def test_round_trip_every_file_type(tmp_path, ftype):
    hp = tiny_hparams(ftype=ftype)
    vocab = tiny_vocab(hp.n_vocab)
    tensors = random_llama_tensors(hp, ftype, quantize=False, seed=int(ftype))
    assert len({t.ggml_type for t in tensors.values()}) >= (1 if ftype == FileType.ALL_F32 else 2)

    gguf = open_model_file(write_gguf(tmp_path / "m.gguf", hp, vocab, tensors))
    assert gguf.format == "gguf-v3"
    assert gguf.hparams == hp
    _assert_same_vocab(gguf.vocab, vocab, "gguf")
    _assert_same_tensors(gguf, tensors)

    ggml = open_model_file(write_ggml(tmp_path / "m.bin", hp, vocab, tensors))
    assert ggml.format == "ggjt-v3"
    assert ggml.hparams == hp
    assert ggml.vocab.piece_encoding == "ggml-v3"
    _assert_same_vocab(ggml.vocab, vocab, "ggml-v3")
    _assert_same_tensors(ggml, tensors, gguf_to_ggml)
    assert ggml.metadata == {}
    assert set(ggml.inferred) >= {"n_ff", "n_head_kv", "rms_norm_eps", "n_ctx_train"}


def test_seed_file_types_use_llama_cpp_type_mix():
    hp = tiny_hparams(n_layer=8)
    types = {t.ggml_type for t in random_llama_tensors(hp, FileType.MOSTLY_Q4_K_M, quantize=False).values()}
    assert types == {GGMLType.F32, GGMLType.Q4_K, GGMLType.Q6_K}
    types = {t.ggml_type for t in random_llama_tensors(hp, FileType.MOSTLY_Q3_K_M, quantize=False).values()}
    assert types == {GGMLType.F32, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K}


@pytest.mark.parametrize("version,alignment", [(2, 32), (3, 32), (3, 64), (3, 1), (2, 256)])
def test_gguf_versions_and_alignments(tmp_path, version, alignment):
    hp = tiny_hparams(rope_freq_base=1e6, rope_freq_scale=0.25, rms_norm_eps=1e-6, n_ctx_train=16384)
    vocab = tiny_vocab(hp.n_vocab)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q5_1, quantize=False, tied=True)
    path = write_gguf(tmp_path / "m.gguf", hp, vocab, tensors, version=version, alignment=alignment)
    m = open_model_file(path)
    assert m.format == f"gguf-v{version}"
    assert m.hparams == hp
    assert "output.weight" not in m.tensors  # tied embeddings
    _assert_same_tensors(m, tensors)
    for info in m.tensors.values():
        assert info.offset % alignment == 0


def test_ggml_infers_gqa_and_n_ff_without_flags(tmp_path):
    # 70B-style: 8 query heads per KV head, n_ff not given by the n_mult formula
    hp = tiny_hparams(n_embd=256, n_head=8, n_head_kv=1, n_ff=768)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_0, quantize=False)
    m = open_model_file(write_ggml(tmp_path / "m.bin", hp, tiny_vocab(hp.n_vocab), tensors, n_mult=4096))
    assert (m.hparams.n_head_kv, m.hparams.n_ff) == (1, 768)
    assert "wk" in m.inferred["n_head_kv"] and "w1" in m.inferred["n_ff"]


def test_ggml_defaults_are_overridable(tmp_path):
    hp = tiny_hparams()
    path = write_ggml(tmp_path / "m.bin", hp, tiny_vocab(hp.n_vocab), random_llama_tensors(hp, quantize=False))
    m = open_model_file(path)
    assert (m.hparams.rms_norm_eps, m.hparams.n_ctx_train) == (1e-5, 4096)
    assert (m.hparams.rope_freq_base, m.hparams.rope_freq_scale) == (10000.0, 1.0)
    m = open_model_file(path, rms_norm_eps=1e-6, n_ctx_train=8192, rope_freq_base=1e6, rope_freq_scale=0.5)
    assert (m.hparams.rms_norm_eps, m.hparams.n_ctx_train) == (1e-6, 8192)
    assert (m.hparams.rope_freq_base, m.hparams.rope_freq_scale) == (1e6, 0.5)
    assert "rms_norm_eps" not in m.inferred


def test_real_llama2_vocabulary(llama_vocab_path, tmp_path):
    m = open_model_file(llama_vocab_path)
    v = m.vocab
    assert (m.format, m.tensors, v.n_vocab, v.model) == ("gguf-v3", {}, 32000, "llama")
    assert v.pieces[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert v.pieces[3] == b"<0x00>" and v.pieces[258] == b"<0xFF>"
    assert v.pieces[29871] == "\u2581".encode()
    assert list(v.token_types[:4]) == [2, 3, 3, 6]
    assert (v.bos_id, v.eos_id, v.unk_id, v.add_bos, v.add_eos) == (1, 2, 0, True, False)
    assert v.scores.dtype == np.float32 and list(v.scores[260:262]) == [-1.0, -2.0] and v.scores[-1] == -31740.0
    assert (m.hparams.n_embd, m.hparams.n_layer, m.hparams.n_ff) == (4096, 32, 11008)

    # the same vocabulary as a GGML v3 file, encoded as the 2023 converter did
    hp = dataclasses.replace(m.hparams, n_embd=256, n_head=4, n_head_kv=4, n_layer=1, n_ff=512, n_rot=64)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q8_0, quantize=False)
    g = open_model_file(write_ggml(tmp_path / "vocab.bin", hp, v, tensors))
    gv = g.vocab
    assert gv.pieces[0] == " \u2047 ".encode() and gv.pieces[1] == b"" and gv.pieces[2] == b""
    assert gv.pieces[3] == b"\x00" and gv.pieces[13] == b"\n" and gv.pieces[29871] == b" "
    assert list(gv.token_types) == list(v.token_types)
    assert to_piece_encoding(gv, "gguf") == v.pieces
    np.testing.assert_array_equal(gv.scores, v.scores)


def test_smollm2_hparams(smollm2):
    m = open_model_file(smollm2)
    hp = m.hparams
    assert m.format == "gguf-v3"
    assert (hp.n_head, hp.n_head_kv, hp.n_embd, hp.n_layer, hp.n_ff) == (9, 3, 576, 30, 1536)
    assert (hp.rope_freq_base, hp.n_ctx_train, hp.n_vocab) == (100000.0, 8192, 49152)
    assert "output.weight" not in m.tensors  # tied embeddings
    assert m.vocab.model == "gpt2" and m.vocab.pre == "smollm" and len(m.vocab.merges) == 48900
    assert "<|im_start|>" in m.vocab.chat_template
    assert m.tensors["token_embd.weight"].ggml_type == GGMLType.Q8_0
    assert m.metadata["general.architecture"] == "llama"


# --- refusals -----------------------------------------------------------------------------------------


def _ggjt_header(version, magic=0x67676A74):
    return struct.pack("<II", magic, version) + struct.pack("<7I", 32, 256, 256, 4, 1, 64, 2)


@pytest.mark.parametrize(
    "content,needle",
    [
        (_ggjt_header(1), "GGJT v1"),
        (_ggjt_header(2), "GGJT v2"),
        (_ggjt_header(7), "unknown version 7"),
        (struct.pack("<II", 0x67676D66, 1) + b"\0" * 64, "GGMF v1"),
        (struct.pack("<I", 0x67676D6C) + b"\0" * 64, "unversioned GGML"),
        (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "GGUF v1"),
        (b"GGUF" + struct.pack("<IQQ", 9, 0, 0), "version 9"),
        (b"PK\x03\x04" + b"\0" * 100, "not a model file"),
        (b"GGUF\x03\0", "too short"),
        (b"", "too short"),
    ],
)
def test_refused_files_say_what_they_are(tmp_path, content, needle):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=needle) as e:
        open_model_file(path)
    assert str(path) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_refuses_non_files(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        open_model_file(tmp_path / "missing.gguf")
    with pytest.raises(ModelFormatError, match="not a regular file"):
        open_model_file(tmp_path)


def test_refuses_other_architectures(tmp_path):
    hp = tiny_hparams()
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), {}, metadata={"general.architecture": "gpt2"})
    with pytest.raises(ModelFormatError, match="architecture is 'gpt2'"):
        open_model_file(path)


def test_refuses_unknown_tensor_type(tmp_path):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, quantize=False)
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), tensors)
    data = bytearray(path.read_bytes())
    name = b"blk.0.attn_q.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8  # n_dims, two dims
    data[at : at + 4] = struct.pack("<I", 99)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="unknown ggml type id 99"):
        open_model_file(path)


@pytest.mark.parametrize("fmt", ["gguf", "ggml"])
def test_truncated_file_states_sizes(tmp_path, fmt):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_K_S, quantize=False)
    writer = write_gguf if fmt == "gguf" else write_ggml
    path = writer(tmp_path / "m", hp, tiny_vocab(hp.n_vocab), tensors)
    full = path.read_bytes()
    path.write_bytes(full[: len(full) - 1000])
    with pytest.raises(ModelFormatError, match="truncated") as e:
        open_model_file(path)
    assert str(len(full) - 1000) in str(e.value)


def test_overlapping_tensors_refused(tmp_path):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, quantize=False)
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), tensors)
    data = bytearray(path.read_bytes())
    name = b"blk.0.attn_k.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8 + 4  # n_dims, dims, type -> offset
    data[at : at + 8] = struct.pack("<Q", 0)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="overlap"):
        open_model_file(path)


def test_wrong_shape_refused(tmp_path):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, quantize=False)
    tensors["blk.1.ffn_up.weight"] = RawTensor(GGMLType.F32, (256, 256), np.zeros((256, 256), np.float32))
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), tensors)
    with pytest.raises(ModelFormatError, match="blk.1.ffn_up.weight.*shape"):
        open_model_file(path)


def test_missing_tensor_refused(tmp_path):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, quantize=False)
    del tensors["blk.1.attn_v.weight"]
    with pytest.raises(ModelFormatError, match="layers.1.attention.wv.weight.*missing"):
        open_model_file(write_ggml(tmp_path / "m.bin", hp, tiny_vocab(hp.n_vocab), tensors))


def test_model_file_closes(tmp_path):
    hp = tiny_hparams()
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), random_llama_tensors(hp, quantize=False))
    with open_model_file(path) as m:
        assert m.tensors
    assert m.tensors == {}


def test_tensor_names_map_both_ways():
    from airoboros_ggml.formats import ggml_to_gguf
    from airoboros_ggml.formats.tensors import expected_llama_shapes

    names = list(expected_llama_shapes(tiny_hparams()))
    ggml = [gguf_to_ggml(n) for n in names]
    assert "layers.1.feed_forward.w2.weight" in ggml and "tok_embeddings.weight" in ggml and "norm.weight" in ggml
    assert [ggml_to_gguf(n) for n in ggml] == names
    assert gguf_to_ggml("rope_freqs.weight") == ggml_to_gguf("rope_freqs.weight") == "rope_freqs.weight"


@pytest.mark.parametrize("alignment", [0, 3, 48, -32])
def test_gguf_writer_refuses_alignments_readers_refuse(tmp_path, alignment):
    hp = tiny_hparams()
    with pytest.raises(ValueError, match="power of two"):
        write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), {}, alignment=alignment)
    assert not (tmp_path / "m.gguf").exists()
