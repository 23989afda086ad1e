"""AiroborosGGMLEmbedding on SmolLM2: the core's embeddings, batched and async, shared with the LLM's model."""

import asyncio

import numpy as np
import pytest
from llama_index.embeddings.airoboros_ggml import AiroborosGGMLEmbedding

import airoboros_ggml

TEXTS = ["Llamas are camelids from South America.", "The GGUF format stores tensors.", "Paris is in France."]


@pytest.fixture(scope="module")
def model() -> airoboros_ggml.Model:
    return airoboros_ggml.load_shared("smollm2", n_ctx=512, n_threads=1)


@pytest.fixture
def embed_model(model) -> AiroborosGGMLEmbedding:
    return AiroborosGGMLEmbedding(model_path="smollm2", n_ctx=512, n_threads=1, embed_batch_size=2)


def test_embeddings_are_the_models(embed_model, model):
    assert embed_model.model is model  # same file and load options: the loaded model is shared
    assert embed_model.model_name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    query = embed_model.get_query_embedding(TEXTS[0])
    text = embed_model.get_text_embedding(TEXTS[0])
    expected = model.embed(TEXTS[0])
    assert len(query) == model.hparams.n_embd
    np.testing.assert_allclose(query, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(text, expected, rtol=1e-6, atol=1e-6)


def test_batches_match_single_texts(embed_model, model):
    batch = embed_model.get_text_embedding_batch(TEXTS)  # embed_batch_size 2: two calls to embed_batch
    assert len(batch) == len(TEXTS)
    for text, vector in zip(TEXTS, batch):
        np.testing.assert_allclose(vector, model.embed(text), rtol=1e-5, atol=1e-5)


def test_async_twins_match_and_keep_the_loop_running(embed_model, model):
    async def run():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.002)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        start = ticks
        batch = await embed_model.aget_text_embedding_batch(TEXTS)
        query = await embed_model.aget_query_embedding(TEXTS[1])
        ticker.cancel()
        return batch, query, ticks - start

    batch, query, during = asyncio.run(run())
    for text, vector in zip(TEXTS, batch):
        np.testing.assert_allclose(vector, model.embed(text), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(query, model.embed(TEXTS[1]), rtol=1e-5, atol=1e-5)
    assert during >= 3  # the engine ran in a worker thread


def test_related_texts_are_closer(embed_model):
    llamas, gguf, _ = (np.asarray(v) for v in embed_model.get_text_embedding_batch(TEXTS))
    alpacas = np.asarray(embed_model.get_query_embedding("Alpacas and llamas live in the Andes."))

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    assert cosine(alpacas, llamas) > cosine(alpacas, gguf)


def test_load_options_and_a_loaded_model_are_exclusive(model):
    assert AiroborosGGMLEmbedding(model=model).model is model
    with pytest.raises(ValueError, match="n_ctx"):
        AiroborosGGMLEmbedding(model=model, n_ctx=256)
    with pytest.raises(ValueError, match="model_path"):
        AiroborosGGMLEmbedding()
