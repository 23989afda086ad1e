"""Flags shared by the commands: one set of load flags, and the llama.cpp spellings of every flag."""

from __future__ import annotations

import argparse
from typing import Any

from ..runtime.options import LoadOptions
from ..tools.hub import resolve_model

# flag -> (LoadOptions field, type, help, short spellings); every command that loads a model takes all of them
LOAD_FLAGS: dict[str, tuple[str, type, str, tuple[str, ...]]] = {
    "--ctx-size": ("n_ctx", int, "context size (default: the model's training context)", ("-c",)),
    "--threads": ("n_threads", int, "threads (default: physical cores)", ("-t",)),
    "--batch-size": ("n_batch", int, "prompt tokens per batch (default 512)", ("-b",)),
    "--rope-freq-base": ("rope_freq_base", float, "RoPE frequency base (default: the file's, or 10000)", ()),
    "--rope-freq-scale": ("rope_freq_scale", float, "RoPE position scale, e.g. 0.5 for 2x context", ()),
    "--rms-norm-eps": ("rms_norm_eps", float, "RMS-norm epsilon (GGML v3 default 1e-5)", ()),
}


class UsageError(Exception):
    """A command-line mistake, reported in one line with exit status 2."""


def spellings(*names: str) -> list[str]:
    """The names plus the ``--a_b`` spelling of every ``--a-b`` one (llama.cpp accepts both)."""
    out = list(names)
    for name in names:
        if name.startswith("--") and "-" in name[2:]:
            out.append("--" + name[2:].replace("-", "_"))
    return out


def add_flag(p: argparse.ArgumentParser, flag: str, dest: str, kind: type, help_: str, *short: str) -> None:
    """Add an optional flag with default None, accepting ``--a_b`` as well as ``--a-b`` (as llama.cpp does)."""
    p.add_argument(*spellings(*short, flag), dest=dest, type=kind, default=None, help=help_)


def add_model_flag(p: argparse.ArgumentParser) -> None:
    """``-m/--model`` (a file, ``smollm2``, or ``hf://OWNER/REPO/FILE``) and llama.cpp's ``--hf-repo/--hf-file``."""
    p.add_argument("-m", "--model", default=None,
                   help="model file (.bin GGML v3 or .gguf), 'smollm2', or hf://OWNER/REPO/FILE (Hugging Face Hub)")
    add_flag(p, "--hf-repo", "hf_repo", str, "Hugging Face repository OWNER/REPO holding the model (with --hf-file)")
    add_flag(p, "--hf-file", "hf_file", str, "file in --hf-repo")


def add_output_flags(p: argparse.ArgumentParser) -> None:
    """``--json`` (a machine-readable result on stdout) and ``-q/--quiet`` (no progress bar, no running output)."""
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or progress messages")


def resolve_model_arg(args: argparse.Namespace) -> None:
    """Turn ``args.model`` (or ``--hf-repo/--hf-file``) into a local path: Hub files come from the cache.

    Raises:
        UsageError: no model given.
        DownloadError: a Hub file cannot be had.
    """
    if not hasattr(args, "model"):
        return
    hf_repo, hf_file = getattr(args, "hf_repo", None), getattr(args, "hf_file", None)
    if args.model is None and not (hf_repo or hf_file):
        raise UsageError("no model: pass -m FILE (or 'smollm2', or hf://OWNER/REPO/FILE, or --hf-repo/--hf-file)")
    quiet = getattr(args, "quiet", False)
    args.model = resolve_model(args.model or "", hf_repo=hf_repo, hf_file=hf_file, progress=False if quiet else None)


def add_load_flags(p: argparse.ArgumentParser, **help_overrides: str) -> None:
    """Add ``-m`` and every load flag to a command that loads a model.

    The flags: ``-c -t -b --rope-freq-base --rope-freq-scale --rms-norm-eps --exact-activations -ngl``.

    Args:
        p: the command's parser.
        **help_overrides: replacement help texts by LoadOptions field (e.g. a command's own default).
    """
    add_model_flag(p)
    for flag, (dest, kind, help_, short) in LOAD_FLAGS.items():
        add_flag(p, flag, dest, kind, help_overrides.get(dest, help_), *short)
    p.add_argument(*spellings("--exact-activations"), action="store_true", default=None,
                   help="exact float32 matrix-vector products (default: 8-bit activations, as llama.cpp)")
    p.add_argument(*spellings("-ngl", "--n-gpu-layers", "--gpu-layers"), dest="n_gpu_layers", type=int, default=None,
                   help="not supported: this runtime is CPU-only (refused if > 0)")


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~airoboros_ggml.runtime.options.LoadOptions` fields given on the command line, validated.

    Raises:
        UsageError: ``-ngl`` asks for GPU layers.
        pydantic.ValidationError: a bad value (reported before the model loads).
    """
    if args.n_gpu_layers:
        raise UsageError(
            f"-ngl/--n-gpu-layers {args.n_gpu_layers}: GPU offload is not available; airoboros-ggml runs on "
            "the CPU only. Remove the flag (or pass -ngl 0)."
        )
    names = [dest for dest, _, _, _ in LOAD_FLAGS.values()] + ["exact_activations"]
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    LoadOptions(**options)
    return options
