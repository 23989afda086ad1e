"""AiroborosGGMLEmbeddings on SmolLM2: batched and single embeddings agree, sync and async agree."""

import numpy as np
import pytest

from langchain_airoboros_ggml import AiroborosGGMLEmbeddings

from .conftest import EMBEDDINGS

TEXTS = ["A llama grazes on the hill.", "Stock markets fell sharply today.", "An alpaca eats grass."]


@pytest.fixture(scope="module")
def embeddings():
    return AiroborosGGMLEmbeddings(**EMBEDDINGS)


async def test_documents_queries_sync_and_async_agree(embeddings):
    documents = np.array(embeddings.embed_documents(TEXTS))
    assert documents.shape == (3, 576)
    queries = np.array([embeddings.embed_query(text) for text in TEXTS])
    np.testing.assert_allclose(documents, queries, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(await embeddings.aembed_documents(TEXTS)), documents, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(await embeddings.aembed_query(TEXTS[1])), documents[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(documents[0], documents[1])
    assert embeddings.embed_documents([]) == []
