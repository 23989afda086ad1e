"""``airoboros-ggml convert IN OUT [--to gguf|ggml]``: GGML v3 <-> GGUF, tensor data copied unchanged."""

from __future__ import annotations

import argparse
import json
import sys

from ..tools.convert import convert_file
from .flags import add_flag, add_output_flags

# flag -> (convert_file argument, type, help): what a GGML v3 file does not store
_HPARAM_FLAGS: dict[str, tuple[str, type, str]] = {
    "--context-length": ("n_ctx_train", int, "training context to record (GGML v3 input: 4096 otherwise)"),
    "--rms-norm-eps": ("rms_norm_eps", float, "RMS-norm epsilon to record (GGML v3 input: 1e-5; Llama-1 used 1e-6)"),
    "--rope-freq-base": ("rope_freq_base", float, "RoPE frequency base to record (default 10000)"),
    "--rope-freq-scale": ("rope_freq_scale", float, "RoPE linear scale to record (default 1.0)"),
}


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``convert`` subcommand."""
    p = sub.add_parser("convert", help="convert a model between GGML v3 (.bin) and GGUF",
                       description="Convert GGML v3 -> GGUF (hyperparameters as the loader infers them, "
                       "SentencePiece vocabulary, Airoboros chat template) or GGUF -> GGML v3. Tensor data is "
                       "copied unchanged; the output is written under a temporary name and renamed when complete.")
    p.add_argument("model", metavar="IN", help="input model file (.bin GGML v3 or .gguf, or hf://OWNER/REPO/FILE)")
    p.add_argument("output", metavar="OUT", help="output file")
    p.add_argument("--to", choices=("gguf", "ggml"), default=None,
                   help="output format (default: from OUT's suffix .gguf/.bin, else the other format)")
    for flag, (dest, kind, help_) in _HPARAM_FLAGS.items():
        add_flag(p, flag, dest, kind, help_)
    p.add_argument("--chat-template", default=None, help="Jinja chat template to record in a GGUF output "
                   "(default: the input's, or Airoboros)")
    add_output_flags(p)
    p.set_defaults(func=convert_command)


def convert_command(args: argparse.Namespace) -> int:
    """Run ``convert``."""
    result = convert_file(
        args.model, args.output, to=args.to, chat_template=args.chat_template,
        **{dest: getattr(args, dest) for dest, _, _ in _HPARAM_FLAGS.values()},
    )
    if args.json:
        json.dump({"path": str(result.path), "format": result.format, "source_format": result.source_format,
                   "tensors": result.n_tensors, "size": result.size}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(f"wrote {result.path} ({result.format}, {result.n_tensors} tensors, {result.size} bytes)")
    return 0
