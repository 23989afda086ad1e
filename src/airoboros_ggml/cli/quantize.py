"""``airoboros-ggml quantize IN OUT TYPE [--dry-run]``: llama.cpp's August-2023 recipes for the 14 seed types."""

from __future__ import annotations

import argparse
import json
import sys

from ..tools.quantize import QUANT_FILE_TYPES, quantize_file
from .flags import UsageError, add_output_flags


def add_quantize_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``quantize`` subcommand."""
    types = " ".join(t.label for t in QUANT_FILE_TYPES)
    p = sub.add_parser("quantize", help="quantize an f32/f16 model file (llama.cpp's recipes)",
                       description="Quantize with llama.cpp's August-2023 per-tensor mixtures (the recipes of "
                       f"TheBloke's files). TYPE: {types}. A quantized input is requantized, with a warning.")
    p.add_argument("model", metavar="IN", help="input model file (f32/f16 ideally; .bin or .gguf, or hf://...)")
    p.add_argument("output", metavar="OUT", help="output file (its suffix .gguf/.bin picks the format)")
    p.add_argument("type", metavar="TYPE", help=f"one of: {types}")
    p.add_argument("--dry-run", action="store_true", help="print the per-tensor plan and the file size; write nothing")
    p.add_argument("--to", choices=("gguf", "ggml"), default=None, help="output format (default: from OUT)")
    p.add_argument("--tensor-type", action="append", default=[], metavar="NAME=TYPE",
                   help="override one tensor's type (GGUF name), e.g. output.weight=Q8_0; repeatable")
    p.add_argument("-t", "--threads", dest="n_threads", type=int, default=None, help="threads (default: cores)")
    add_output_flags(p)
    p.set_defaults(func=quantize_command)


def _overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, type_name = item.partition("=")
        if not sep or not name or not type_name:
            raise UsageError(f"--tensor-type {item!r}: expected NAME=TYPE, e.g. output.weight=Q8_0")
        out[name] = type_name
    return out


def quantize_command(args: argparse.Namespace) -> int:
    """Run ``quantize``: print the plan (``--dry-run``) or quantize, then a summary (or JSON)."""
    result = quantize_file(args.model, args.output, args.type, dry_run=args.dry_run, to=args.to,
                           tensor_types=_overrides(args.tensor_type), n_threads=args.n_threads)
    plan = result.plan
    if args.json:
        report = plan.to_dict()
        report.update(path=str(result.path) if result.path else None, seconds=round(result.seconds, 3))
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.dry_run:
        print(plan.render())
    elif not args.quiet:
        print(f"wrote {result.path} ({plan.ftype.label}, {plan.bits_per_weight:.2f} bits per weight, "
              f"{plan.size} bytes) in {result.seconds:.1f} s")
    return 0
