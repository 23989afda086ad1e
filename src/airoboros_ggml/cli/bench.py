"""``airoboros-ggml bench -m FILE``: prompt/generation speed, time to first token and peak RSS."""

from __future__ import annotations

import argparse
import json
import sys

from ..tools.bench import render, run_bench
from .flags import add_load_flags, load_options, spellings


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand."""
    p = sub.add_parser("bench", help="measure prompt/generation speed, time to first token and peak RSS")
    add_load_flags(p, n_ctx="context size [max(600, p + n)]", n_threads="threads [physical cores]",
                   n_batch="prompt batch size [512]")
    p.add_argument(*spellings("-p", "--n-prompt"), dest="n_prompt", type=int, default=512,
                   help="prompt tokens (0: skip) [512]")
    p.add_argument(*spellings("-n", "--n-predict"), dest="n_predict", type=int, default=32,
                   help="generated tokens (0: skip) [32]")
    p.add_argument("--reps", type=int, default=3, help="repetitions; medians are reported [3]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids [0]")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """Run ``bench``: measure, then print the table (or JSON with ``--json``)."""
    options = load_options(args)
    try:
        report = run_bench(args.model, n_prompt=args.n_prompt, n_gen=args.n_predict, reps=args.reps,
                           seed=args.seed, **options)
    except ValueError as e:
        print(f"airoboros-ggml bench: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report))
    return 0
