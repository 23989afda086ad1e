import json

import pytest

from airoboros_ggml import FileType
from airoboros_ggml.cli import main
from airoboros_ggml.formats import write_ggml
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    hp = tiny_hparams(ftype=FileType.MOSTLY_Q4_K_M)
    path = tmp_path_factory.mktemp("cli") / "tiny.ggmlv3.q4_K_M.bin"
    return write_ggml(path, hp, tiny_vocab(hp.n_vocab), random_llama_tensors(hp, FileType.MOSTLY_Q4_K_M))


def test_info_text_and_json(tiny_bin, capsys):
    assert main(["info", str(tiny_bin)]) == 0
    out = capsys.readouterr().out
    assert "ggjt-v3" in out and "q4_K_M" in out and "inferred" in out and "blk" not in out
    assert "layers.0.attention.wq.weight" in out
    assert main(["info", str(tiny_bin), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "ggjt-v3" and report["hparams"]["n_head_kv"] == 2
    assert {"n_ff", "n_head_kv"} <= set(report["inferred"])
    assert {t["type"] for t in report["tensors"]} == {"F32", "Q4_K", "Q6_K"}
    assert report["memory"]["estimated_total_bytes"] > report["tensor_bytes"]


def test_console_script_flushes_and_returns_the_exit_status(tiny_bin, tmp_path):
    """The console script ends without the interpreter's teardown: its output is complete and its exit status
    is main's, on success and on error."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "airoboros_ggml", "info", str(tiny_bin), "--json"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and json.loads(ok.stdout)["format"] == "ggjt-v3"
    bad = subprocess.run([sys.executable, "-m", "airoboros_ggml", "info", str(tmp_path / "missing.bin")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr


def test_info_refuses_bad_file_cleanly(tmp_path, capsys):
    bad = tmp_path / "old.bin"
    bad.write_bytes(b"tjgg" + b"\x02\x00\x00\x00" + b"\0" * 64)  # GGJT v2
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "GGJT v2" in err and "Traceback" not in err


def test_run_generates_and_reports(tiny_bin, capsys):
    assert main(["run", "-m", str(tiny_bin), "-p", "hello", "--temp", "0", "-n", "5", "-c", "512"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")


def test_run_reports_context_overflow(tiny_bin, capsys):
    assert main(["run", "-m", str(tiny_bin), "-p", "hello", "-c", "64"]) == 2
    err = capsys.readouterr().err
    assert "context window is 64 tokens" in err and "Traceback" not in err


def test_run_accepts_llama_cpp_spellings(tiny_bin):
    args = ["run", "-m", str(tiny_bin), "-p", "hi", "-n", "3", "-c", "512", "--repeat_penalty", "1.1", "--top_k", "5",
            "--rope-freq-base", "10000", "--rms-norm-eps", "1e-5", "-t", "1", "-b", "8", "--seed", "3"]
    assert main(args) == 0
    assert main([*args, "--exact-activations"]) == 0


def test_exact_activations_flag_reaches_the_load_options():
    from airoboros_ggml.cli import build_parser
    from airoboros_ggml.cli.run import _options

    parse = build_parser().parse_args
    assert _options(parse(["run", "-m", "x.gguf", "--exact-activations"]))[0]["exact_activations"] is True
    assert "exact_activations" not in _options(parse(["run", "-m", "x.gguf"]))[0]  # LoadOptions default


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--top-k", "-1"], "top_k"),
        (["--temp", "nan"], "temperature"),
        (["-c", "0"], "n_ctx"),
        (["-ngl", "35"], "GPU offload is not available"),
        ([], "no prompt"),
    ],
)
def test_run_rejects_bad_options(tiny_bin, capsys, flags, needle):
    prompt = [] if needle == "no prompt" else ["-p", "x"]
    assert main(["run", "-m", str(tiny_bin), *prompt, *flags]) == 2
    assert needle in capsys.readouterr().err


def test_run_constrained_by_grammar_and_schema(tiny_bin, capsys, tmp_path):
    grammar = tmp_path / "yes.gbnf"
    grammar.write_text('root ::= "yes" | "no"')
    base = ["run", "-m", str(tiny_bin), "-p", "ok?", "-n", "8", "-c", "512", "--seed", "1"]
    assert main([*base, "--grammar-file", str(grammar)]) == 0
    assert capsys.readouterr().out.strip() in ("yes", "no")
    assert main([*base, "--grammar", 'root ::= [a-c]{3}']) == 0
    out = capsys.readouterr().out.strip()
    assert len(out) == 3 and set(out) <= set("abc")
    assert main([*base, "-j", '{"enum": [1, 2]}']) == 0
    assert capsys.readouterr().out.strip() in ("1", "2")


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--grammar", 'root ::= "a" missing'], "missing"),
        (["-j", "{nope"], "not valid JSON"),
        (["-j", '{"type": "objekt"}'], "Invalid type"),
        (["--grammar", "root ::= 'a'", "--grammar-file", "x.gbnf"], "either --grammar or --grammar-file"),
        (["--grammar", 'root ::= "a"', "-j", "{}"], "at most one"),
    ],
)
def test_run_rejects_bad_constraints_before_loading(tmp_path, capsys, flags, needle):
    assert main(["run", "-m", str(tmp_path / "never-loaded.bin"), "-p", "x", *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_run_with_missing_model(tmp_path, capsys):
    assert main(["run", "-m", str(tmp_path / "nope.bin"), "-p", "x"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_chat_reads_turns_until_eof(tiny_bin, capsys, monkeypatch):
    lines = iter(["hello there", "/reset", "again", "a long message " * 40, "short"])

    def fake_input(prompt=""):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "-m", str(tiny_bin), "--temp", "0", "-n", "4", "-c", "600"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") >= 3
    assert "context window is 600 tokens" in captured.err  # the long message alone does not fit


def test_warmup_compiles_into_the_cache_and_reports_it(tiny_bin, capsys):
    assert main(["warmup", "-m", str(tiny_bin), "-c", "64", "-np", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"].endswith("tiny.ggmlv3.q4_K_M.bin") and report["seconds"] >= 0
    assert report["cache_dir"]
    assert main(["warmup", "-m", str(tiny_bin), "-c", "64", "-np", "2"]) == 0  # same plan: nothing left to do
    assert "ready in 0.0 s; numba cache:" in capsys.readouterr().out
