"""GGML v3 files made without our writer, checked against other engines (issue 15).

Every other GGML v3 file in the suite is written by our ``write_ggml`` and read by our reader, so a mistake
both share (a swapped tensor name, a vocabulary encoding) is invisible there. Here the GGJT v3 file is made
by ``tests/ggjt_oracle.py`` (gguf-py + struct, names from gguf-py's own table) from a GGUF that gguf-py's
``GGUFWriter`` wrote, and the logits are checked three ways:

- against our GGUF path on the same weights: bit-identical (the same kernels see the same weights);
- against an independent float64 numpy forward pass over gguf-py's dequantization: within 0.005;
- against ctransformers 0.2.27 (llama.cpp of August 2023) on the same GGJT v3 bytes, golden logits made by
  ``scripts/make_ggml_v3_oracle.py``: within the spread two independent engines show (below).
"""

import json
from types import SimpleNamespace

import gguf
import numpy as np
import pytest

import airoboros_ggml
from airoboros_ggml.formats import ggml_to_gguf, gguf_to_ggml, open_model_file
from airoboros_ggml.vocab import to_piece_encoding
from ggjt_oracle import DATA, convert_gguf_to_ggjt, gguf_to_pth_names, read_vocab, sha256, write_llama_gguf
from test_forward import reference_logits

ORACLE_GGUF = DATA / "ggml-v3-oracle.gguf"
GOLDEN = json.loads((DATA / "ggml-v3-oracle-ctransformers.json").read_text())

# Measured spread between ctransformers and an exact float64 forward pass on this file: max |diff| 0.072 /
# 0.076 on the two cases (logit std 0.79), all of it ctransformers' own 8-bit activation rounding (our
# exact path is within 0.0013 of float64). Ours (8-bit activations too) vs ctransformers: max 0.085 /
# 0.086, relative RMS 0.028 / 0.025. A swapped tensor or a wrong dequantizer moves logits by ~the std.
CTRANSFORMERS_MAX_DIFF = 0.15
CTRANSFORMERS_REL_RMS = 0.05
# ours with exact activations vs float64 numpy: 0.0013 (the f16 KV cache)
FLOAT64_MAX_DIFF = 0.005


def _dequantized(path):
    """Every tensor of a GGUF file as gguf-py reads and dequantizes it (float32, numpy-order shape)."""
    tensors = {}
    for t in gguf.GGUFReader(path).tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = SimpleNamespace(data=values, shape=values.shape)
    return tensors


@pytest.fixture(scope="module")
def ggjt(tmp_path_factory):
    return convert_gguf_to_ggjt(ORACLE_GGUF, tmp_path_factory.mktemp("oracle") / "oracle.ggmlv3.bin")


@pytest.fixture(scope="module")
def ours(ggjt):
    """Our models on the GGJT v3 and the GGUF file: quantized activations (default) and exact."""
    return {
        (fmt, exact): airoboros_ggml.load(path, n_ctx=64, exact_activations=exact)
        for fmt, path in (("ggml", ggjt), ("gguf", ORACLE_GGUF)) for exact in (False, True)
    }


def test_fixture_is_the_file_ctransformers_read(ggjt):
    assert sha256(ORACLE_GGUF) == GOLDEN["gguf_sha256"]
    assert sha256(ggjt) == GOLDEN["ggjt_sha256"]
    types = {t.tensor_type for t in gguf.GGUFReader(ORACLE_GGUF).tensors}
    assert len(types) == 12  # F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K


def test_ggml_v3_file_reads_as_its_gguf_source(ggjt):
    g, u = open_model_file(ggjt), open_model_file(ORACLE_GGUF)
    assert g.format == "ggjt-v3"
    assert g.hparams == u.hparams  # n_ff and n_head_kv inferred from shapes
    names = gguf_to_pth_names(u.hparams.n_layer)  # gguf-py's table, not ours
    assert set(g.tensors) == {names[n] for n in u.tensors}
    for name, info in u.tensors.items():
        ours = g.tensors[names[name]]
        assert (ours.ggml_type, ours.shape) == (info.ggml_type, info.shape), name
        np.testing.assert_array_equal(ours.data, info.data, err_msg=name)
    assert to_piece_encoding(g.vocab, "gguf") == u.vocab.pieces
    np.testing.assert_array_equal(g.vocab.scores, u.vocab.scores)
    np.testing.assert_array_equal(g.vocab.token_types, u.vocab.token_types)


def test_tensor_name_table_agrees_with_gguf_py():
    for gguf_name, pth_name in gguf_to_pth_names(3).items():
        assert (gguf_to_ggml(gguf_name), ggml_to_gguf(pth_name)) == (pth_name, gguf_name)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["text"][:12])
def test_logits_match_gguf_float64_and_ctransformers(ours, case):
    ids = case["ids"]
    # ctransformers tokenized " " + text (no dummy prefix in 2023's llama.cpp): the same ids as ours
    assert ours["ggml", False].tokenizer.tokenize(case["text"], add_bos=True) == ids
    for exact in (False, True):
        np.testing.assert_array_equal(ours["ggml", exact].logits(ids), ours["gguf", exact].logits(ids))

    expected = reference_logits(_dequantized(ORACLE_GGUF), ours["gguf", True].hparams, ids)  # (n_tok, n_vocab)
    np.testing.assert_allclose(ours["ggml", True].logits(ids), expected, atol=FLOAT64_MAX_DIFF, rtol=0)

    golden = np.asarray(case["logits"], dtype=np.float32)  # float32 (n_tok, n_vocab)
    for exact in (False, True):
        diff = ours["ggml", exact].logits(ids) - golden
        assert np.abs(diff).max() <= CTRANSFORMERS_MAX_DIFF
        assert np.sqrt(np.mean(diff**2) / np.mean(golden**2)) <= CTRANSFORMERS_REL_RMS


def test_gqa_file_reads_as_its_gguf_source(tmp_path):
    # ctransformers refuses GQA below 70B, so this one has only our GGUF path and float64 as oracles
    T = gguf.GGMLQuantizationType
    src = write_llama_gguf(tmp_path / "gqa.gguf", read_vocab(ORACLE_GGUF, 512), n_head=8, n_head_kv=2, n_layer=1,
                           seed=3, types=lambda name: T.F16 if "attn" in name else T.Q8_0)
    ggjt = convert_gguf_to_ggjt(src, tmp_path / "gqa.bin")
    g = airoboros_ggml.load(ggjt, n_ctx=16, exact_activations=True)
    assert (g.hparams.n_head, g.hparams.n_head_kv) == (8, 2)
    ids = [1, 450, 301, 310, 344, 338]
    np.testing.assert_array_equal(g.logits(ids), airoboros_ggml.load(src, n_ctx=16, exact_activations=True)
                                  .logits(ids))
    np.testing.assert_allclose(g.logits(ids), reference_logits(_dequantized(src), g.hparams, ids),
                               atol=FLOAT64_MAX_DIFF, rtol=0)
