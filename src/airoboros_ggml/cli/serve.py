"""``airoboros-ggml serve``: the OpenAI-compatible HTTP server (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import importlib.util

from ..model import load
from .flags import UsageError, add_load_flags, load_options


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``."""
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions, ...)")
    add_load_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("-np", "--parallel", dest="n_seq", type=int, default=None,
                   help="sequences decoded together (continuous batching; default 1)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every route but /health")
    p.add_argument("--model-name", default=None, help="the name clients use (default: the file's name)")
    p.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 8 MiB)")
    p.add_argument("--max-tokens-limit", type=int, default=None,
                   help="cap of a request's max_tokens (default 4096)")
    p.add_argument("--max-in-flight", type=int, default=None,
                   help="requests queued or running before new ones get 503 (default 64)")
    p.add_argument("--prompt-format", default=None,
                   help="chat template: auto (the file's; default for smollm2), airoboros (default), chatml, ...")
    p.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Validate the flags, load the model, serve until SIGTERM/Ctrl-C."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise UsageError("the server needs FastAPI and uvicorn: pip install 'airoboros-ggml[server]'")
    from ..serve import ServerSettings, run_server

    options = load_options(args)
    if args.n_seq is not None:
        options["n_seq"] = args.n_seq
    names = ("api_key", "model_name", "max_body_bytes", "max_tokens_limit", "max_in_flight")
    settings = ServerSettings(**{n: getattr(args, n) for n in names if getattr(args, n) is not None})
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    prompt_format = args.prompt_format or ("auto" if args.model == "smollm2" else "airoboros")
    model = load(args.model, prompt_format=prompt_format, **options)
    run_server(model, settings, host=args.host, port=args.port)
    return 0
