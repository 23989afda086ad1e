"""``airoboros-ggml warmup -m FILE``: compile every kernel the model needs into numba's on-disk cache."""

from __future__ import annotations

import argparse
import json
import sys

from .flags import add_load_flags, load_options


def add_warmup_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``warmup`` subcommand."""
    p = sub.add_parser(
        "warmup",
        help="compile the kernels a model needs into numba's cache (for images and CI)",
        description="Compile (or load) every numba kernel the model's requests will call and store it in "
        "numba's on-disk cache, so that later processes start answering without compiling. Honours "
        "NUMBA_CACHE_DIR.",
    )
    add_load_flags(p)
    p.add_argument("-np", "--parallel", dest="n_seq", type=int, default=None,
                   help="sequence slots decoded together, as the server's -np (adds their batched kernels) [1]")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=warmup_command)


def warmup_command(args: argparse.Namespace) -> int:
    """Run ``warmup``: load the model, warm it up, report the time and the cache directory."""
    from ..model import load
    from ..runtime.warmup import cache_dir

    options = load_options(args)
    if args.n_seq is not None:
        options["n_seq"] = args.n_seq
    model = load(args.model, **options)
    seconds = model.warm_up()
    report = {"model": str(model.file.path), "seconds": round(seconds, 3), "cache_dir": cache_dir()}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"kernels for {model.file.path.name} ready in {seconds:.1f} s; numba cache: {report['cache_dir']}")
    return 0
