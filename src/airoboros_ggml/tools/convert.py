"""Convert a model file between GGML v3 (``.bin``) and GGUF, tensor data copied byte for byte.

GGML v3 -> GGUF: the hyperparameters the GGML file lacks are taken as the loader infers them (``n_ff``,
``n_head_kv`` from tensor shapes; context 4096, epsilon 1e-5, RoPE 10000/1.0 unless given), the vocabulary
is decoded back to SentencePiece pieces with scores and token types, and the Airoboros prompt format is
recorded as the chat template (a Jinja text that renders exactly what :func:`get_template` ``("airoboros")``
renders). GGUF -> GGML v3: refused for what GGML v3 cannot hold (a byte-level BPE vocabulary), with a
warning for each setting it cannot store; a tied output matrix is written out as a copy of the embedding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..formats import LazyTensor, TensorInfo, open_model_file
from ..generation.templates import PromptTemplate, get_template
from ..progress import progress_bar
from .model_output import (
    TargetFormat,
    carried_metadata,
    check_ggml_v3_target,
    source_tensors,
    target_format,
    write_model,
)

log = logging.getLogger(__name__)


def jinja_chat_template(template: PromptTemplate) -> str:
    """A Jinja chat template (``tokenizer.chat_template``) rendering ``template``'s format.

    Works for templates whose system part comes first (not inside the first user turn), such as
    ``airoboros``, ``vicuna`` and ``alpaca``.
    """
    if "{system}" in template.user:
        raise ValueError(f"template {template.name!r} puts the system prompt inside a turn; not expressible here")

    def around(fmt: str) -> tuple[str, str]:
        before, _, after = fmt.partition("{content}")
        return json.dumps(before), json.dumps(after)

    sys_pre, sys_post = around(template.system)
    user_pre, user_post = around(template.user)
    asst_pre, asst_post = around(template.assistant)
    content = "(message['content'] | trim)" if template.strip_assistant else "message['content']"
    default = (
        json.dumps(template.system.replace("{content}", template.default_system))
        if template.default_system is not None
        else '""'
    )
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        f"{{{{- {sys_pre} + messages[0]['content'] + {sys_post} -}}}}"
        "{%- set loop_messages = messages[1:] -%}"
        f"{{%- else -%}}{{{{- {default} -}}}}"
        "{%- set loop_messages = messages -%}{%- endif -%}"
        "{%- for message in loop_messages -%}"
        f"{{%- if message['role'] == 'user' -%}}{{{{- {user_pre} + message['content'] + {user_post} -}}}}"
        f"{{%- elif message['role'] == 'assistant' -%}}{{{{- {asst_pre} + {content} + {asst_post} -}}}}"
        "{%- endif -%}{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{- {json.dumps(template.generation_prompt)} -}}}}{{%- endif -%}}"
    )


AIROBOROS_CHAT_TEMPLATE = jinja_chat_template(get_template("airoboros"))
"""The Airoboros prompt format as a Jinja chat template (what GGML v3 -> GGUF conversion records)."""


@dataclasses.dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_file` wrote."""

    path: Path
    """The output file."""
    format: TargetFormat
    """``"gguf"`` or ``"ggml"``."""
    source_format: str
    """The input's container and version (``"ggjt-v3"``, ``"gguf-v3"``...)."""
    n_tensors: int
    """Tensors written."""
    size: int
    """Output file size in bytes."""


def convert_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str | None = None,
    n_ctx_train: int | None = None,
    rms_norm_eps: float | None = None,
    rope_freq_base: float | None = None,
    rope_freq_scale: float | None = None,
    chat_template: str | None = None,
    progress: bool | None = None,
) -> ConvertResult:
    """Convert ``src`` (GGML v3 or GGUF) into ``dst`` (GGUF or GGML v3), copying tensor data unchanged.

    Args:
        src: The input model file.
        dst: The output file; written under a temporary name and renamed when complete.
        to: ``"gguf"`` or ``"ggml"``; default from ``dst``'s suffix (``.gguf``/``.bin``), else the other
            format than ``src``'s.
        n_ctx_train: Training context to record (GGML v3 inputs store none: 4096 otherwise).
        rms_norm_eps: RMSNorm epsilon to record (GGML v3 inputs: 1e-5 otherwise; Llama-1 used 1e-6).
        rope_freq_base: RoPE base to record (10000 otherwise).
        rope_freq_scale: RoPE linear scale to record (1.0 otherwise).
        chat_template: Jinja chat template for a GGUF output (default: the input's, or Airoboros).
        progress: Draw a progress bar (default: on a terminal unless logging is quieter than INFO).

    Returns:
        What was written.

    Raises:
        ModelFormatError: ``src`` is not a supported model file.
        ConversionError: the target format cannot hold this model.
        OutputFileError: ``dst`` cannot be written (nothing is left behind, also on Ctrl-C).
    """
    model_file = open_model_file(src, n_ctx_train=n_ctx_train, rms_norm_eps=rms_norm_eps,
                                 rope_freq_base=rope_freq_base, rope_freq_scale=rope_freq_scale)
    with model_file:
        fmt = target_format(dst, to, model_file.format)
        hparams, vocab = model_file.hparams, model_file.vocab
        tensors = source_tensors(model_file)
        metadata = {}
        if fmt == "ggml":
            tensors = check_ggml_v3_target(model_file, hparams, tensors)
        else:
            if chat_template is not None or vocab.chat_template is None:
                vocab = dataclasses.replace(vocab, chat_template=chat_template or AIROBOROS_CHAT_TEMPLATE)
            metadata = carried_metadata(model_file, hparams, vocab)
            metadata.setdefault("general.name", Path(src).name.removesuffix(".bin").removesuffix(".gguf"))
            if model_file.inferred:
                log.info("%s: recorded as inferred: %s", Path(src).name, "; ".join(
                    f"{field} = {getattr(hparams, field, '?')} ({how})" for field, how in model_file.inferred.items()))
        total = sum(info.nbytes for info in tensors.values())
        with progress_bar(total, f"convert -> {fmt}", progress=progress, unit="B", unit_scale=True) as bar:
            lazy = {name: _copied(info, bar) for name, info in tensors.items()}
            written = write_model(dst, fmt, hparams, vocab, lazy, metadata=metadata)
    log.info("wrote %s (%s, %d tensors, %.1f MB)", dst, fmt, len(lazy), written.size / 1e6)
    return ConvertResult(Path(dst), fmt, model_file.format, len(lazy), written.size)


def _copied(info: TensorInfo, bar: tqdm) -> LazyTensor:
    def produce() -> np.ndarray:
        bar.update(info.nbytes)
        return info.data  # uint8 (nbytes,): the bytes as stored, written unchanged

    return LazyTensor(info.ggml_type, info.shape, produce)
