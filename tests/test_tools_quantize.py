"""quantize_file: per-tensor types follow llama.cpp's August-2023 recipes (read back from the files), the file
size equals the dry-run plan, tensor bytes equal the quantizers applied to the whole tensor, legacy fallback
for rows that are not a multiple of 256, requantizing warns, and bad requests fail cleanly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import airoboros_ggml
from airoboros_ggml.errors import ConversionError, ModelFormatError
from airoboros_ggml.formats import open_model_file, write_ggml, write_gguf
from airoboros_ggml.ggml_types import SEED_FILE_TYPES, FileType, GGMLType
from airoboros_ggml.quants import dequantize, quantize
from airoboros_ggml.tools.quantize import parse_file_type, plan_quantization, quantize_file
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

G = GGMLType
TOKENS = [1, 300, 301, 302, 400, 511, 260, 7]


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hp = tiny_hparams(n_vocab=512, n_ff=256)
    path = tmp_path_factory.mktemp("q") / "f32.gguf"
    return write_gguf(path, hp, tiny_vocab(512), random_llama_tensors(hp, seed=1))


@pytest.mark.parametrize("ftype", SEED_FILE_TYPES, ids=lambda t: t.label)
def test_each_seed_type_follows_its_plan_and_predicted_size(f32_model: Path, tmp_path: Path, ftype: FileType) -> None:
    out = tmp_path / f"{ftype.label}.gguf"
    dry = quantize_file(f32_model, out, ftype.label, dry_run=True)
    assert dry.path is None and not out.exists()
    result = quantize_file(f32_model, out, ftype.label, progress=False)
    assert out.stat().st_size == dry.plan.size == result.plan.size
    with open_model_file(out) as q, open_model_file(f32_model) as src:
        assert q.hparams.ftype == ftype
        planned = {t.name: t.target_type for t in dry.plan.tensors}
        assert {name: info.ggml_type for name, info in q.tensors.items()} == planned
        for name, info in q.tensors.items():
            original = dequantize(src.tensors[name].data, G.F32, info.shape)
            assert np.array_equal(info.data, quantize(original, info.ggml_type).reshape(-1)), name
    assert np.isfinite(airoboros_ggml.load(out, n_threads=1).logits(TOKENS)).all()


def _types(directory: Path, ftype: str, **hparams) -> dict[str, GGMLType]:
    """The planned type of every tensor of an 8-layer model (the plan reads no tensor data)."""
    hp = tiny_hparams(n_layer=8, **hparams)
    model = write_gguf(directory / "model.gguf", hp, tiny_vocab(512), random_llama_tensors(hp, quantize=False))
    return {t.name: t.target_type for t in plan_quantization(model, ftype).tensors}


def test_k_mixtures_as_llama_cpp_chose_them(tmp_path: Path) -> None:
    # llama.cpp, August 2023: with 8 layers use_more_bits(i) holds for i in {0, 3, 6, 7}; output.weight -> Q6_K
    more = {0, 3, 6, 7}
    q4km = _types(tmp_path, "q4_K_M")
    assert q4km["output.weight"] == G.Q6_K and q4km["token_embd.weight"] == G.Q4_K
    assert q4km["output_norm.weight"] == G.F32 and q4km["blk.3.attn_norm.weight"] == G.F32
    for i in range(8):
        assert q4km[f"blk.{i}.attn_v.weight"] == q4km[f"blk.{i}.ffn_down.weight"] == (G.Q6_K if i in more else G.Q4_K)
        assert q4km[f"blk.{i}.attn_q.weight"] == q4km[f"blk.{i}.ffn_up.weight"] == G.Q4_K
    q3km = _types(tmp_path, "q3_K_M")
    assert [q3km[f"blk.{i}.attn_v.weight"] for i in range(3)] == [G.Q5_K, G.Q5_K, G.Q4_K]
    assert q3km["blk.5.attn_output.weight"] == G.Q4_K and q3km["blk.5.attn_k.weight"] == G.Q3_K
    q3kl = _types(tmp_path, "q3_K_L")
    assert q3kl["blk.5.attn_output.weight"] == q3kl["blk.5.ffn_down.weight"] == G.Q5_K
    q2k = _types(tmp_path, "q2_K")
    assert q2k["blk.4.attn_v.weight"] == q2k["blk.4.ffn_down.weight"] == G.Q4_K
    assert q2k["blk.4.ffn_gate.weight"] == G.Q2_K
    q4ks = _types(tmp_path, "q4_K_S")
    assert set(q4ks.values()) == {G.F32, G.Q4_K, G.Q6_K} and q4ks["blk.0.attn_v.weight"] == G.Q4_K
    q40 = _types(tmp_path, "q4_0")
    assert q40["output.weight"] == G.Q6_K and q40["blk.0.attn_v.weight"] == G.Q4_0


def test_rows_not_a_multiple_of_256_fall_back_to_legacy_types(tmp_path: Path) -> None:
    # 320-wide rows cannot be K-quants; ffn_down rows (n_ff = 768) can
    types = _types(tmp_path, "q4_K_M", n_embd=320, n_head=5, n_head_kv=5, n_ff=768)
    assert types["blk.1.attn_q.weight"] == G.Q5_0 and types["token_embd.weight"] == G.Q5_0
    assert types["blk.0.attn_v.weight"] == G.Q8_0  # Q6_K -> Q8_0
    assert types["output.weight"] == G.Q5_0  # the recipe's Q6_K needs 256-multiples; it falls back to the base
    assert types["blk.1.ffn_down.weight"] == G.Q4_K and types["blk.0.ffn_down.weight"] == G.Q6_K
    assert _types(tmp_path, "q2_K", n_embd=320, n_head=5, n_head_kv=5, n_ff=768)["blk.1.attn_q.weight"] == G.Q4_0
    assert _types(tmp_path, "q3_K_S", n_embd=320, n_head=5, n_head_kv=5, n_ff=768)["blk.1.attn_q.weight"] == G.Q4_1
    assert _types(tmp_path, "q5_K_S", n_embd=320, n_head=5, n_head_kv=5, n_ff=768)["blk.1.attn_q.weight"] == G.Q5_1


def test_ggml_v3_input_and_output(tmp_path: Path) -> None:
    hp = tiny_hparams(ftype=FileType.MOSTLY_F16)
    src = write_ggml(tmp_path / "m.f16.bin", hp, tiny_vocab(512), random_llama_tensors(hp, FileType.MOSTLY_F16))
    out = quantize_file(src, tmp_path / "m.q5_1.bin", "Q5_1", progress=False)
    with open_model_file(out.path) as q:
        assert q.format == "ggjt-v3" and q.hparams.ftype == FileType.MOSTLY_Q5_1
        assert q.tensors["layers.0.attention.wq.weight"].ggml_type == G.Q5_1
    assert out.path.stat().st_size == out.plan.size
    ref = airoboros_ggml.load(src).logits(TOKENS)
    got = airoboros_ggml.load(out.path).logits(TOKENS)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.99  # 5-bit weights: close to the f16 model


def test_requantizing_warns_and_overrides_apply(f32_model: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    q8 = quantize_file(f32_model, tmp_path / "q8.gguf", "q8_0", progress=False).path
    with caplog.at_level(logging.WARNING):
        result = quantize_file(q8, tmp_path / "q4.gguf", "q4_0", progress=False,
                               tensor_types={"blk.0.attn_q.weight": "Q8_0", "token_embd.weight": "f16"})
    assert "requantizing" in caplog.text
    plan = {t.name: t for t in result.plan.tensors}
    assert plan["blk.0.attn_q.weight"].copied and plan["blk.0.attn_q.weight"].reason == "override"
    assert plan["token_embd.weight"].target_type == G.F16 and plan["blk.1.attn_q.weight"].target_type == G.Q4_0
    with pytest.raises(ConversionError, match="unknown ggml type name"):
        plan_quantization(q8, "q4_0", tensor_types={"output.weight": "Q9_Z"})
    with pytest.raises(ConversionError, match="does not have: nope"):
        plan_quantization(q8, "q4_0", tensor_types={"nope": "Q4_0"})


def test_bad_type_and_bad_input(f32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="q2_K q3_K_S .* q8_0 f16 f32"):
        parse_file_type("q4_K_X")
    assert parse_file_type("Q4_K_M") == parse_file_type(15) == FileType.MOSTLY_Q4_K_M
    (tmp_path / "junk.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ModelFormatError):
        quantize_file(tmp_path / "junk.bin", tmp_path / "out.bin", "q4_0")
    assert sorted(os.listdir(tmp_path)) == ["junk.bin"]


def test_plan_render_and_json(f32_model: Path) -> None:
    plan = plan_quantization(f32_model, "q4_K_M")
    text = plan.render()
    assert "blk.0.attn_v.weight" in text and "F32 -> Q6_K" in text and f"file size {plan.size} bytes" in text
    data = plan.to_dict()
    assert data["size"] == plan.size and len(data["tensors"]) == len(plan.tensors)


def test_ctrl_c_leaves_no_output(tmp_path: Path) -> None:
    hp = tiny_hparams(n_layer=4)
    src = write_gguf(tmp_path / "f32.gguf", hp, tiny_vocab(512), random_llama_tensors(hp, seed=2))
    # slow each tensor down so that the interrupt lands while the file is being written
    script = textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job inherits SIG_IGN
        from airoboros_ggml.tools import quantize as q
        real = q.quantize_rows
        def slow(*args, **kwargs):
            time.sleep(0.3)
            return real(*args, **kwargs)
        q.quantize_rows = slow
        q.quantize_file("f32.gguf", "out.gguf", "q8_0", progress=False)
        print("finished")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(n.startswith(".out.gguf.") for n in os.listdir(tmp_path)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err and "finished" not in out
    assert sorted(os.listdir(tmp_path)) == [src.name]
