"""The ``tokenize`` subcommand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from airoboros_ggml.cli.tokenize import add_tokenize_parser

LLAMA_GGUF = Path(__file__).parent / "data" / "ggml-vocab-llama-spm.gguf"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_tokenize_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_ids_only(capsys):
    assert _run(["tokenize", "-m", str(LLAMA_GGUF), "-p", "Hello world", "--ids-only"]) == 0
    assert json.loads(capsys.readouterr().out) == [1, 15043, 3186]


def test_no_bos_and_special(capsys):
    assert _run(["tokenize", "-m", str(LLAMA_GGUF), "-p", "<s>Hi</s>", "--ids-only", "--special"]) == 0
    assert json.loads(capsys.readouterr().out) == [1, 6324, 2]
    assert _run(["tokenize", "-m", str(LLAMA_GGUF), "-p", "Hi", "--ids-only", "--no-bos"]) == 0
    assert json.loads(capsys.readouterr().out) == [6324]


def test_pieces_listing(capsys):
    assert _run(["tokenize", "-m", str(LLAMA_GGUF), "-p", "Hello 🦙"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["1", "->", "'<s>'", "(<s>)"]
    assert "15043 -> ' Hello'" in out[1]
    assert out[-1] == f"{len(out) - 1} tokens"
