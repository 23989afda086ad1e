"""What ``airoboros-ggml info`` reports about a model file."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..formats import ModelFile
from ..ggml_types import LAYOUTS, FileType

RUNTIME_OVERHEAD_BYTES = 64 << 20
"""Rough working memory of the runtime beyond weights and KV cache (activations, scratch, Python)."""


def describe(model_file: ModelFile, n_ctx: int | None = None) -> dict[str, Any]:
    """A JSON-serialisable description of a model file.

    Args:
        model_file: The parsed file.
        n_ctx: Context used for the memory estimate (default: the training context).
    """
    hp = model_file.hparams
    n_ctx = hp.n_ctx_train if n_ctx is None else n_ctx
    hparams = dataclasses.asdict(hp)
    ftype = hp.ftype
    hparams["ftype"] = ftype.label if isinstance(ftype, FileType) else int(ftype)
    kv = model_file.kv_cache_bytes(n_ctx)
    return {
        "path": str(model_file.path),
        "format": model_file.format,
        "file_type": hparams["ftype"],
        "hparams": hparams,
        "inferred": dict(model_file.inferred),
        "vocab": {
            "n_vocab": model_file.vocab.n_vocab,
            "model": model_file.vocab.model,
            "pre": model_file.vocab.pre,
            "bos_id": model_file.vocab.bos_id,
            "eos_id": model_file.vocab.eos_id,
            "chat_template": model_file.vocab.chat_template is not None,
        },
        "tensors": [
            {
                "name": t.name,
                "type": t.ggml_type.name,
                "shape": list(t.shape),
                "bytes": t.nbytes,
                "bpw": LAYOUTS[t.ggml_type].bits_per_weight,
            }
            for t in model_file.tensors.values()
        ],
        "n_params": model_file.n_params,
        "tensor_bytes": model_file.tensor_bytes,
        "bits_per_weight": round(model_file.bits_per_weight, 4),
        "memory": {
            "n_ctx": n_ctx,
            "weights_bytes": model_file.tensor_bytes,
            "kv_cache_bytes": kv,
            "estimated_total_bytes": model_file.tensor_bytes + kv + RUNTIME_OVERHEAD_BYTES,
        },
        "metadata_keys": sorted(model_file.metadata),
    }


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def render(report: dict[str, Any], max_tensors: int | None = None) -> str:
    """Human-readable text of :func:`describe`'s report."""
    hp = report["hparams"]
    lines = [
        f"file:      {report['path']}",
        f"format:    {report['format']}   file type: {report['file_type']}",
        f"params:    {report['n_params']:,} weights, {_size(report['tensor_bytes'])} of tensors, "
        f"{report['bits_per_weight']:.2f} bits per weight",
        "",
        "hyperparameters:",
    ]
    for key, value in hp.items():
        how = report["inferred"].get(key)
        lines.append(f"  {key:<16} {value!s:<12}" + (f"  (inferred: {how})" if how else ""))
    v = report["vocab"]
    lines += [
        "",
        f"vocabulary: {v['n_vocab']} tokens, tokenizer {v['model']}"
        + (f" (pre-tokenizer {v['pre']})" if v["pre"] else "")
        + f", bos {v['bos_id']}, eos {v['eos_id']}"
        + (", has a chat template" if v["chat_template"] else ""),
        "",
    ]
    mem = report["memory"]
    lines.append(
        f"memory to run at n_ctx {mem['n_ctx']}: ~{_size(mem['estimated_total_bytes'])} "
        f"(weights {_size(mem['weights_bytes'])} memory-mapped, KV cache {_size(mem['kv_cache_bytes'])})"
    )
    tensors = report["tensors"]
    if tensors:
        lines += ["", f"tensors ({len(tensors)}):", f"  {'name':<40} {'type':<6} {'shape':<20} {'bytes':>14}"]
        shown = tensors if max_tensors is None else tensors[:max_tensors]
        for t in shown:
            shape = "x".join(str(d) for d in t["shape"])
            lines.append(f"  {t['name']:<40} {t['type']:<6} {shape:<20} {t['bytes']:>14,}")
        if len(shown) < len(tensors):
            lines.append(f"  ... {len(tensors) - len(shown)} more (use --all)")
    else:
        lines += ["", "tensors: none (vocabulary-only file)"]
    return "\n".join(lines)
