"""``airoboros-ggml perplexity -m FILE -f TEXT [-c 512] [--chunks N] [--json]``: llama.cpp's perplexity."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ContextOverflowError
from ..model import load
from ..progress import progress_enabled
from ..tools.perplexity import perplexity
from .flags import UsageError, add_load_flags, add_output_flags, load_options

DEFAULT_CTX = 512


def add_perplexity_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``perplexity`` subcommand."""
    p = sub.add_parser("perplexity", help="perplexity of a model on a text file (llama.cpp's method)",
                       description="Non-overlapping chunks of -c tokens, each evaluated from an empty cache with "
                       "BOS first; the second half of each chunk is scored. Prints the running estimate and "
                       "the final PPL +/- its standard error.")
    add_load_flags(p, n_ctx=f"tokens per chunk (default {DEFAULT_CTX})")
    p.add_argument("-f", "--file", required=True, help="text file to score (UTF-8)")
    p.add_argument("--chunks", type=int, default=None, help="score at most this many chunks (default: all)")
    add_output_flags(p)
    p.set_defaults(func=perplexity_command)


def perplexity_command(args: argparse.Namespace) -> int:
    """Run ``perplexity``."""
    options = load_options(args)
    n_ctx = options.pop("n_ctx", None) or DEFAULT_CTX
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"-f {args.file}: cannot read the text ({e})") from None
    model = load(args.model, n_ctx=n_ctx, **options)
    running = not args.quiet and not args.json and not progress_enabled()  # on a terminal the bar shows it

    def show(i: int, ppl: float) -> None:  # llama-perplexity's line: [1]4.1234,[2]4.3456,...
        if running:
            print(f"{',' if i > 1 else ''}[{i}]{ppl:.4f}", end="", file=sys.stderr, flush=True)

    try:
        result = perplexity(model, text, n_ctx=n_ctx, n_chunks=args.chunks, on_chunk=show)
    except ValueError as e:  # a text too short for the context
        if isinstance(e, ContextOverflowError):
            raise
        raise UsageError(f"-f {args.file}: {e}") from None
    if running:
        print(file=sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"Final estimate: PPL = {result.ppl:.4f} +/- {result.stderr:.5f}")
        if not args.quiet:
            print(f"{result.n_chunks} chunks of {n_ctx} tokens ({result.n_scored} scored of {result.n_tokens}), "
                  f"{result.seconds:.1f} s, {result.tokens_per_s:.1f} tokens/s evaluated, "
                  f"{result.scored_tokens_per_s:.1f} tokens/s scored", file=sys.stderr)
    return 0
