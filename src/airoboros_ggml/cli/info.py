"""``airoboros-ggml info FILE [--json] [--all] [-c N]``: describe a model file."""

from __future__ import annotations

import argparse
import json
import sys

from ..formats import open_model_file
from ..tools.info import describe, render
from .flags import LOAD_FLAGS, add_flag


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``info`` subcommand."""
    p = sub.add_parser("info", help="describe a GGML v3 or GGUF model file")
    p.add_argument("model", help="model file (.bin GGML v3 or .gguf)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--all", action="store_true", help="list every tensor")
    dest, kind, _, short = LOAD_FLAGS["--ctx-size"]
    add_flag(p, "--ctx-size", dest, kind, "context size for the memory estimate", *short)
    p.set_defaults(func=info_command)


def info_command(args: argparse.Namespace) -> int:
    """Run ``info``: print the text report (or JSON with ``--json``)."""
    with open_model_file(args.model) as model_file:
        report = describe(model_file, n_ctx=args.n_ctx)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report, max_tensors=None if args.all else 24))
    return 0
