"""The ``airoboros-ggml`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import ContextOverflowError, ModelFormatError

log = logging.getLogger("airoboros_ggml")

Command = Callable[[argparse.Namespace], int]


def _info(args: argparse.Namespace) -> int:
    from ..formats import open_model_file
    from ..tools.info import describe, render

    with open_model_file(args.model) as model_file:
        report = describe(model_file, n_ctx=args.ctx_size)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report, max_tensors=None if args.all else 24))
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a GGML v3 or GGUF model file")
    p.add_argument("model", help="model file (.bin GGML v3 or .gguf)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--all", action="store_true", help="list every tensor")
    p.add_argument("-c", "--ctx-size", type=int, default=None, help="context size for the memory estimate")
    p.set_defaults(func=_info)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="airoboros-ggml",
        description="Run Llama-2 models stored as GGML v3 (.bin) or GGUF with numpy + numba.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    for add in _optional_commands():
        add(sub)
    return parser


def _optional_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    from ..tools.bench import add_bench_parser
    from .run import add_run_parsers
    from .tokenize import add_tokenize_parser

    return [add_tokenize_parser, add_run_parsers, add_bench_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airoboros-ggml`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (ModelFormatError, ContextOverflowError) as e:
        print(f"airoboros-ggml: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
