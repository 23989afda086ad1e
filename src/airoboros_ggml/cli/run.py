"""``airoboros-ggml run`` and ``airoboros-ggml chat``: llama.cpp ``main``-compatible generation commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..errors import ContextOverflowError
from ..generation.options import SamplingOptions
from ..generation.results import Chunk
from ..model import Model, load
from .flags import UsageError, add_flag, add_load_flags, load_options, spellings

log = logging.getLogger(__name__)

# flag -> SamplingOptions field (llama.cpp spellings; underscore variants are accepted too)
_SAMPLING_FLAGS: dict[str, tuple[str, type, str]] = {
    "--temp": ("temperature", float, "temperature (0 = greedy)"),
    "--top-k": ("top_k", int, "top-k sampling (0 = off)"),
    "--top-p": ("top_p", float, "top-p (nucleus) sampling"),
    "--min-p": ("min_p", float, "min-p sampling (0 = off)"),
    "--tfs": ("tfs_z", float, "tail-free sampling z (1 = off)"),
    "--typical": ("typical_p", float, "locally typical sampling p (1 = off)"),
    "--repeat-penalty": ("repeat_penalty", float, "penalty for repeated tokens (1 = off)"),
    "--repeat-last-n": ("repeat_last_n", int, "tokens considered for penalties (-1 = all)"),
    "--frequency-penalty": ("frequency_penalty", float, "frequency penalty"),
    "--presence-penalty": ("presence_penalty", float, "presence penalty"),
    "--mirostat": ("mirostat", int, "mirostat mode (0 off, 1, 2)"),
    "--mirostat-lr": ("mirostat_eta", float, "mirostat learning rate (eta)"),
    "--mirostat-ent": ("mirostat_tau", float, "mirostat target entropy (tau)"),
}
_COLOR_PROMPT = "\033[33m"
_COLOR_RESET = "\033[0m"


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    add_load_flags(p)
    add_flag(p, "--n-predict", "max_tokens", int, "tokens to generate (-1 = until done)", "-n")
    add_flag(p, "--seed", "seed", int, "random seed (-1 = random)", "-s")
    for flag, (dest, kind, help_) in _SAMPLING_FLAGS.items():
        add_flag(p, flag, dest, kind, help_)
    p.add_argument(*spellings("-r", "--reverse-prompt"), dest="stop", action="append", default=None,
                   help="stop generating at this text (repeatable)")
    p.add_argument(*spellings("--prompt-format"), default=None,
                   help="prompt template: airoboros (default), llama-2-chat, chatml, alpaca, vicuna, raw, auto "
                        "(the file's own template; the default for -m smollm2)")
    p.add_argument("--system", default=None, help="system message replacing the template's preamble")
    p.add_argument("--color", action="store_true", help="colour the prompt / user input")
    p.add_argument("--grammar", default=None, help="GBNF grammar (llama.cpp syntax) the output must follow")
    p.add_argument(*spellings("--grammar-file"), dest="grammar_file", default=None,
                   help="read the GBNF grammar from a file")
    p.add_argument(*spellings("-j", "--json-schema"), dest="json_schema", default=None,
                   help="JSON Schema (JSON text) the output must follow")


def add_run_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``run`` and ``chat``."""
    run = sub.add_parser("run", help="generate text (llama.cpp `main`-compatible flags)")
    _add_generation_flags(run)
    run.add_argument("-p", "--prompt", default=None, help="prompt (formatted with --prompt-format)")
    run.add_argument("-f", "--file", default=None, help="read the prompt from a file")
    run.add_argument("-i", "--interactive", action="store_true", help="continue as an interactive chat")
    run.set_defaults(func=run_command)
    chat = sub.add_parser("chat", help="interactive multi-turn chat")
    _add_generation_flags(chat)
    chat.set_defaults(func=chat_command, prompt=None, file=None, interactive=True)


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments of :func:`~airoboros_ggml.load` and of the sampling calls, validated before loading."""
    load_kw = load_options(args)
    if args.seed is not None:
        load_kw["seed"] = args.seed  # the default seed of every call (-1: fresh entropy)
    load_kw["prompt_format"] = args.prompt_format or ("auto" if args.model == "smollm2" else "airoboros")
    sampling = {dest: getattr(args, dest) for dest, _, _ in _SAMPLING_FLAGS.values()}
    sampling.update(max_tokens=args.max_tokens, stop=args.stop, **_constraint(args))
    sampling = {k: v for k, v in sampling.items() if v is not None}
    options = SamplingOptions(**sampling)  # validate now, so a bad value is reported before the model loads
    if options.constraints():  # and a bad grammar or schema too
        from ..constrain import constraint_grammar

        constraint_grammar(**options.constraints())
    return load_kw, sampling


def _constraint(args: argparse.Namespace) -> dict[str, Any]:
    """``--grammar``, ``--grammar-file``, ``-j/--json-schema`` as SamplingOptions fields."""
    if args.grammar is not None and args.grammar_file is not None:
        raise UsageError("give either --grammar or --grammar-file, not both")
    grammar = args.grammar
    if args.grammar_file is not None:
        try:
            grammar = Path(args.grammar_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--grammar-file: {e}") from e
    schema = None
    if args.json_schema is not None:
        try:
            schema = json.loads(args.json_schema)
        except json.JSONDecodeError as e:
            raise UsageError(f"-j/--json-schema: not valid JSON: {e}") from None
    return {"grammar": grammar, "json_schema": schema}


def _stream(chunks: Iterator[Chunk], out: TextIO) -> str:
    """Write the chunks as they come, then log the timings; return the whole text."""
    texts: list[str] = []
    for chunk in chunks:
        out.write(chunk.text)
        out.flush()
        texts.append(chunk.text)
    out.write("\n")
    _report(chunk)
    return "".join(texts)


def _report(chunk: Chunk) -> None:
    t, u = chunk.timings, chunk.usage
    log.info(
        "prompt: %d tokens (%d reused) in %.2f s, %.1f tok/s | generation: %d tokens in %.2f s, %.1f tok/s | "
        "finish: %s",
        u.prompt_tokens, u.cached_tokens, t.prompt_s, t.prompt_tokens_per_s,
        u.completion_tokens, t.generation_s, t.generation_tokens_per_s, chunk.finish_reason,
    )


def _messages(system: str | None, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + turns


def _interactive(model: Model, args, sampling: dict[str, Any], turns: list[dict[str, str]]) -> None:
    color = args.color and sys.stdout.isatty()
    sys.stderr.write("interactive chat: empty line or Ctrl-D to quit, /reset to start over\n")
    while True:
        try:
            if color:
                sys.stdout.write(_COLOR_PROMPT)
            line = input("> ")
        except EOFError:
            break
        finally:
            if color:
                sys.stdout.write(_COLOR_RESET)
        if not line.strip():
            break
        if line.strip() == "/reset":
            turns.clear()
            continue
        turns.append({"role": "user", "content": line})
        while True:
            try:
                chunks = model.stream_chat(_messages(args.system, turns), **sampling)
                break
            except ContextOverflowError as e:
                if len(turns) <= 1:
                    sys.stderr.write(f"airoboros-ggml: {e}\n")
                    turns.clear()
                    chunks = None
                    break
                del turns[:2]  # forget the oldest exchange and try again
                log.info("conversation exceeds the context: dropped the oldest turn")
        if chunks is None:
            continue
        turns.append({"role": "assistant", "content": _stream(chunks, sys.stdout)})


def run_command(args: argparse.Namespace) -> int:
    """Run ``run`` (and ``chat``): load, format the prompt, stream the answer, print timings."""
    load_kw, sampling = _options(args)
    if args.prompt is not None and args.file is not None:
        raise UsageError("give either -p/--prompt or -f/--file, not both")
    try:
        prompt = Path(args.file).read_text(encoding="utf-8") if args.file else args.prompt
    except OSError as e:
        raise UsageError(str(e)) from e
    if prompt is None and not args.interactive:
        raise UsageError("no prompt: pass -p TEXT, -f FILE or -i for an interactive chat")
    model = load(args.model, **load_kw)
    log.info("%r", model)
    if prompt is not None:
        if args.color and sys.stdout.isatty():
            sys.stdout.write(_COLOR_PROMPT + prompt + _COLOR_RESET + "\n")
        _stream(model.stream_chat(_messages(args.system, [{"role": "user", "content": prompt}]), **sampling),
                sys.stdout)
    if args.interactive:  # the interactive chat starts after the one-shot answer
        _interactive(model, args, sampling, [])
    return 0


chat_command = run_command
