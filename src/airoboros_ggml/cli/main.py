"""The ``airoboros-ggml`` command line."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from ..errors import (
    ContextOverflowError,
    ConversionError,
    DownloadError,
    GrammarError,
    ModelFormatError,
    OutputFileError,
)
from ..generation.options import format_validation_error
from .bench import add_bench_parser
from .convert import add_convert_parser
from .flags import UsageError, resolve_model_arg
from .info import add_info_parser
from .perplexity import add_perplexity_parser
from .quantize import add_quantize_parser
from .run import add_run_parsers
from .serve import add_serve_parser
from .tokenize import add_tokenize_parser
from .warmup import add_warmup_parser

log = logging.getLogger("airoboros_ggml")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="airoboros-ggml",
        description="Run Llama-2 models stored as GGML v3 (.bin) or GGUF with numpy + numba.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_info_parser,
        add_tokenize_parser,
        add_run_parsers,
        add_bench_parser,
        add_serve_parser,
        add_convert_parser,
        add_quantize_parser,
        add_perplexity_parser,
        add_warmup_parser,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airoboros-ggml`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        resolve_model_arg(args)
        return int(args.func(args) or 0)
    except ValidationError as e:
        print("airoboros-ggml: invalid option\n" + format_validation_error(e), file=sys.stderr)
        return 2
    except (
        UsageError,
        ModelFormatError,
        ContextOverflowError,
        GrammarError,
        ConversionError,
        OutputFileError,
        DownloadError,
    ) as e:
        print(f"airoboros-ggml: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def console_main() -> NoReturn:
    """The ``airoboros-ggml`` console script: :func:`main`, then exit without the interpreter's teardown.

    Tearing down a process that used the model (numba's compiled libraries, the tokenizer's tables, the
    mapped file) takes ~0.3 s after the last output (SmolLM2, measured on 2 cores: 0.27 s between the last
    ``atexit`` handler and the end of the process), 15% of a warm ``scripts/demo``. Every command has
    finished its work when :func:`main` returns (files closed, helper processes waited for, servers shut
    down), so after running ``atexit`` handlers and flushing logging and both streams the process ends with
    :func:`os._exit`. In-process callers (tests, embedding applications) use :func:`main`.
    """
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
