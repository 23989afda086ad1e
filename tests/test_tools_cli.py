"""The tool commands: convert, quantize (dry run = real size), perplexity (running estimate, JSON), hf:// models
from an offline cache, clear errors with exit status 2, and Ctrl-C through the CLI leaving no output file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from airoboros_ggml.cli.main import main
from airoboros_ggml.formats import open_model_file, write_ggml, write_gguf
from airoboros_ggml.ggml_types import FileType
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab
from test_tools_hub import COMMIT, FILE, REPO, populated_cache


@pytest.fixture()
def f16_bin(tmp_path: Path) -> Path:
    hp = tiny_hparams(ftype=FileType.MOSTLY_F16)
    return write_ggml(tmp_path / "m.f16.bin", hp, tiny_vocab(512), random_llama_tensors(hp, FileType.MOSTLY_F16))


def test_convert_and_quantize(f16_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["convert", str(f16_bin), str(tmp_path / "m.gguf"), "--rms-norm-eps", "1e-6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "gguf" and report["size"] == (tmp_path / "m.gguf").stat().st_size
    with open_model_file(tmp_path / "m.gguf") as g:
        assert g.hparams.rms_norm_eps == 1e-6

    out = tmp_path / "m.q4_K_M.gguf"
    override = ["--tensor-type", "blk.1.attn_q.weight=q8_0"]
    assert main(["quantize", str(tmp_path / "m.gguf"), str(out), "q4_K_M", "--dry-run", *override]) == 0
    plan_text = capsys.readouterr().out
    assert not out.exists() and "F16 -> Q6_K" in plan_text and "q4_K_M (gguf)" in plan_text
    assert main(["quantize", str(tmp_path / "m.gguf"), str(out), "q4_K_M", "--json", *override]) == 0
    report = json.loads(capsys.readouterr().out)
    assert f"file size {report['size']} bytes" in plan_text and out.stat().st_size == report["size"]
    with open_model_file(out) as q:
        assert q.tensors["blk.1.attn_q.weight"].ggml_type.name == "Q8_0"


@pytest.mark.parametrize("argv, message", [
    (["quantize", "IN", "OUT", "q4_K_X"], "unknown quantization type 'q4_K_X'; choose one of q2_K"),
    (["quantize", "IN", "OUT", "q4_0", "--tensor-type", "oops"], "expected NAME=TYPE"),
    (["convert", "missing.bin", "out.gguf"], "missing.bin: no such file"),
    (["perplexity", "-f", "text.txt"], "no model: pass -m FILE"),
])
def test_clear_errors(argv: list[str], message: str, f16_bin: Path, capsys: pytest.CaptureFixture,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(f16_bin.parent)
    argv = [str(f16_bin) if a == "IN" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(os.listdir(f16_bin.parent)) == [f16_bin.name]


def test_perplexity_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hp = tiny_hparams()
    model = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(512), random_llama_tensors(hp, quantize=False))
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog " * 20)
    assert main(["perplexity", "-m", str(model), "-f", str(text), "-c", "32", "--chunks", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-2].startswith("[1]") and ",[3]" in captured.err  # the running estimate
    assert captured.out.startswith("Final estimate: PPL = ") and " +/- " in captured.out
    assert main(["perplexity", "-m", str(model), "-f", str(text), "-c", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_ctx"] == 32 and report["n_scored"] == report["n_chunks"] * 15 and report["ppl"] > 1
    assert report["scored_tokens_per_s"] * 32 == pytest.approx(report["tokens_per_s"] * 15)  # 15 of 32 scored
    assert main(["perplexity", "-m", str(model), "-f", str(text), "-c", "512"]) == 2
    assert "needs at least 1024" in capsys.readouterr().err


def test_hf_model_from_an_offline_cache(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = populated_cache(tmp_path / "hub")
    # the environment variables, as a user sets them (huggingface_hub reads them when it is imported)
    proc = subprocess.run([sys.executable, "-m", "airoboros_ggml.cli.main", "info", f"hf://{REPO}@{COMMIT}/{FILE}",
                           "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)})
    assert proc.returncode == 0 and json.loads(proc.stdout)["format"] == "gguf-v3", proc.stderr
    # the same settings in this process
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    assert main(["tokenize", "-m", f"hf://{REPO}/{FILE}", "-p", "abc"]) == 0
    assert main(["bench", "--hf-repo", REPO, "--hf-file", "absent.gguf"]) == 2
    assert "absent.gguf: not in the Hugging Face cache" in capsys.readouterr().err


def test_ctrl_c_during_convert_leaves_no_output(f16_bin: Path) -> None:
    # slow each tensor's copy down so that the interrupt lands while the file is being written
    script = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job inherits SIG_IGN
        from airoboros_ggml.cli.main import main
        from airoboros_ggml.tools import convert
        real = convert._copied
        def slow(info, bar):
            lazy = real(info, bar)
            def produce():
                time.sleep(0.2)
                return lazy.produce()
            return type(lazy)(lazy.ggml_type, lazy.shape, produce)
        convert._copied = slow
        sys.exit(main(["convert", "m.f16.bin", "m.gguf"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=f16_bin.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(n.startswith(".m.gguf.") for n in os.listdir(f16_bin.parent)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert sorted(os.listdir(f16_bin.parent)) == [f16_bin.name]
