"""``airoboros-ggml tokenize -m FILE -p TEXT [--ids-only] [--no-bos] [--special]``."""

from __future__ import annotations

import argparse
import json
import sys

from ..tokenizer import Tokenizer


def add_tokenize_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``tokenize`` subcommand.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The subcommand's parser (its ``func`` default is :func:`tokenize_command`).
    """
    p = subparsers.add_parser("tokenize", help="show how a model file's tokenizer splits a text")
    p.add_argument("-m", "--model", required=True, help="model file (.bin GGML v3 or .gguf, vocab-only works)")
    p.add_argument("-p", "--prompt", required=True, help="text to tokenize")
    p.add_argument("--ids-only", action="store_true", help="print only the list of token ids")
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS token the file asks for")
    p.add_argument(
        "--special", action="store_true", help="parse control tokens written in the text (<s>, <|im_start|>)"
    )
    p.set_defaults(func=tokenize_command)
    return p


def tokenize_command(args: argparse.Namespace) -> int:
    """Run ``tokenize``: print ``[ids]`` (``--ids-only``) or one ``id -> 'piece'`` line per token.

    Returns:
        The exit status (0).
    """
    tok = Tokenizer.from_file(args.model)
    ids = tok.tokenize(args.prompt, add_bos=not args.no_bos, special=args.special)
    out = sys.stdout
    if args.ids_only:
        out.write(json.dumps(ids) + "\n")
        return 0
    for token_id in ids:
        text = tok.token_to_bytes(token_id, special=True).decode("utf-8", errors="backslashreplace")
        out.write(f"{token_id:>6} -> {text!r}  ({tok.token_to_piece(token_id)})\n")
    out.write(f"{len(ids)} tokens\n")
    return 0
