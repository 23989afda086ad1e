"""convert_file: GGML v3 -> GGUF -> GGML v3 round trips for all 16 file types (tensor bytes, vocabulary,
logits), GGUF output read by the gguf package's reader and dequantized by gguf.quants, what GGML v3 refuses,
the Airoboros chat template, and failures that must leave no output behind."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gguf
import jinja2
import numpy as np
import pytest
from gguf import quants as gq

import airoboros_ggml
from airoboros_ggml.errors import ConversionError, ModelFormatError, OutputFileError
from airoboros_ggml.formats import open_model_file, write_ggml, write_gguf
from airoboros_ggml.generation.templates import get_template
from airoboros_ggml.ggml_types import FileType
from airoboros_ggml.quants import dequantize
from airoboros_ggml.tools.convert import AIROBOROS_CHAT_TEMPLATE, convert_file
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

FILE_TYPES = [t for t in FileType if t != FileType.MOSTLY_Q4_1_SOME_F16]  # the 16 that llama.cpp still wrote
TOKENS = [1, 300, 301, 302, 400, 511, 260, 7]


def _ggml_file(path: Path, ftype: FileType, seed: int = 0) -> Path:
    hp = tiny_hparams(ftype=ftype)
    write_ggml(path, hp, tiny_vocab(512, seed), random_llama_tensors(hp, ftype, seed=seed, quantize=False))
    return path


@pytest.mark.parametrize("ftype", FILE_TYPES, ids=lambda t: t.label)
def test_round_trip_ggml_gguf_ggml(tmp_path: Path, ftype: FileType) -> None:
    src = _ggml_file(tmp_path / "model.ggmlv3.bin", ftype, seed=int(ftype))
    mid = convert_file(src, tmp_path / "model.gguf", progress=False)
    back = convert_file(mid.path, tmp_path / "back.bin", progress=False)
    assert (mid.format, back.format, mid.source_format) == ("gguf", "ggml", "ggjt-v3")
    with open_model_file(src) as a, open_model_file(mid.path) as g, open_model_file(back.path) as b:
        assert g.format == "gguf-v3" and b.format == "ggjt-v3"
        assert list(a.tensors) == list(b.tensors)
        for name, info in a.tensors.items():
            assert b.tensors[name].ggml_type == info.ggml_type and b.tensors[name].shape == info.shape
            assert bytes(b.tensors[name].data) == bytes(info.data), name
        assert b.vocab.pieces == a.vocab.pieces
        assert np.array_equal(b.vocab.scores, a.vocab.scores)
        assert np.array_equal(b.vocab.token_types, a.vocab.token_types)
        assert b.hparams == a.hparams == g.hparams
        # the GGUF holds SentencePiece pieces again: U+2581 for spaces, <0x..> byte pieces, named controls
        assert g.vocab.pieces[:4] == [b"<unk>", b"<s>", b"</s>", b"<0x00>"]
        assert g.vocab.chat_template == AIROBOROS_CHAT_TEMPLATE

    reader = gguf.GGUFReader(mid.path)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["general.file_type"].contents() == int(ftype)
    with open_model_file(src) as a:
        for tensor in reader.tensors:
            ours = a.tensors[airoboros_ggml.formats.gguf_to_ggml(tensor.name)]
            assert int(tensor.tensor_type) == int(ours.ggml_type)
            assert bytes(np.asarray(tensor.data).view(np.uint8).reshape(-1)) == bytes(ours.data)
            with np.errstate(all="ignore"):
                theirs = gq.dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(ours.shape)
                mine = dequantize(ours.data, ours.ggml_type, ours.shape)
            assert np.array_equal(theirs.astype(np.float32).view(np.uint32), mine.view(np.uint32)), tensor.name


@pytest.mark.parametrize("ftype", [FileType.ALL_F32, FileType.MOSTLY_Q4_0, FileType.MOSTLY_Q4_K_M,
                                   FileType.MOSTLY_Q6_K], ids=lambda t: t.label)
def test_converted_models_give_identical_logits(tmp_path: Path, ftype: FileType) -> None:
    hp = tiny_hparams(ftype=ftype)
    src = tmp_path / "model.bin"
    write_ggml(src, hp, tiny_vocab(512), random_llama_tensors(hp, ftype, seed=3))
    gguf_path = convert_file(src, tmp_path / "model.gguf", progress=False).path
    back = convert_file(gguf_path, tmp_path / "back.bin", progress=False).path
    ref = airoboros_ggml.load(src, n_threads=1).logits(TOKENS)
    assert np.isfinite(ref).all() and ref.std() > 0
    for path in (gguf_path, back):
        assert np.array_equal(airoboros_ggml.load(path, n_threads=1).logits(TOKENS), ref)


def test_hyperparameter_flags_are_recorded_and_template_is_airoboros(tmp_path: Path) -> None:
    src = _ggml_file(tmp_path / "m.bin", FileType.MOSTLY_Q8_0)
    out = convert_file(src, tmp_path / "m.gguf", n_ctx_train=2048, rms_norm_eps=1e-6, rope_freq_base=20000.0,
                       progress=False).path
    with open_model_file(out) as g:
        assert (g.hparams.n_ctx_train, g.hparams.rms_norm_eps, g.hparams.rope_freq_base) == (2048, 1e-6, 20000.0)
        assert g.metadata["general.name"] == "m"
    assert airoboros_ggml.load(out, prompt_format="auto").template.name == "airoboros"


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why {braces}?"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  b \n"}, {"role": "user", "content": "c"}],
])
def test_chat_template_renders_like_the_airoboros_template(messages: list[dict]) -> None:
    jinja = jinja2.Environment().from_string(AIROBOROS_CHAT_TEMPLATE)
    ours = get_template("airoboros")
    for add in (True, False):
        assert jinja.render(messages=messages, add_generation_prompt=add) == ours.format(
            messages, add_generation_prompt=add)


def test_gguf_with_bpe_vocabulary_cannot_become_ggml(tmp_path: Path) -> None:
    hp = tiny_hparams()
    vocab = dataclasses.replace(tiny_vocab(512), model="gpt2", add_bos=False)
    src = write_gguf(tmp_path / "bpe.gguf", hp, vocab, random_llama_tensors(hp, quantize=False))
    with pytest.raises(ConversionError, match="byte-level BPE.*GGML v3"):
        convert_file(src, tmp_path / "bpe.bin", progress=False)
    assert os.listdir(tmp_path) == ["bpe.gguf"]


def test_tied_gguf_to_ggml_writes_the_output_matrix(tmp_path: Path) -> None:
    hp = tiny_hparams(ftype=FileType.MOSTLY_Q8_0)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q8_0, seed=5, tied=True)
    src = write_gguf(tmp_path / "tied.gguf", hp, tiny_vocab(512), tensors)
    out = convert_file(src, tmp_path / "tied.bin", progress=False).path
    with open_model_file(out) as b:
        assert bytes(b.tensors["output.weight"].data) == bytes(b.tensors["tok_embeddings.weight"].data)
    assert np.array_equal(airoboros_ggml.load(out).logits(TOKENS), airoboros_ggml.load(src).logits(TOKENS))


def test_not_a_model_is_the_loaders_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a model" * 10)
    with pytest.raises(ModelFormatError, match="not a model file"):
        convert_file(tmp_path / "notes.txt", tmp_path / "x.gguf")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    src = _ggml_file(tmp_path / "m.bin", FileType.MOSTLY_Q4_0)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root ignores permission bits; sysfs refuses new files even to root
        read_only = Path("/sys")
    with pytest.raises(OutputFileError, match="not writable"):
        convert_file(src, read_only / "m.gguf", progress=False)
    assert not (read_only / "m.gguf").exists()


def _run_limited(script: str, cwd: Path, file_size_limit: int) -> subprocess.CompletedProcess:
    """Run python code with RLIMIT_FSIZE set, so writes past the limit fail as on a full disk (EFBIG)."""
    prelude = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    _ggml_file(tmp_path / "m.bin", FileType.MOSTLY_Q4_0)
    size = (tmp_path / "m.bin").stat().st_size
    proc = _run_limited("""
        from airoboros_ggml.errors import OutputFileError
        from airoboros_ggml.tools.convert import convert_file
        try:
            convert_file("m.bin", "m.gguf", progress=False)
        except OutputFileError as e:
            print("OutputFileError:", e)
    """, tmp_path, size // 2)
    assert "OutputFileError: m.gguf: cannot write the output file: there is no room left" in proc.stdout, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.bin"]


def test_progress_bar_on_request_and_silent_when_piped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _ggml_file(tmp_path / "m.bin", FileType.MOSTLY_Q4_0)
    convert_file(src, tmp_path / "a.gguf", progress=True)
    assert "convert -> gguf" in capsys.readouterr().err
    convert_file(src, tmp_path / "b.gguf")  # default: a bar only on a terminal; pytest's stderr is not one
    assert "convert" not in capsys.readouterr().err
