"""End to end, no mocks: a VectorStoreIndex with our embeddings, query and chat engines with our LLM (SmolLM2)."""

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.embeddings.airoboros_ggml import AiroborosGGMLEmbedding
from llama_index.llms.airoboros_ggml import AiroborosGGML

DOCS = {
    "festival": "The Quillon harvest festival lasts nine days. Every spring the town of Quillon eats blue pancakes "
    "during the festival.",
    "gguf": "GGUF is a binary file format for model weights. It stores tensors, their types and a key-value header.",
    "plants": "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "rome": "The Roman Empire was ruled from Rome; Augustus became its first emperor in 27 BC.",
    "python": "Python is a programming language; lists, dictionaries and functions are its basic building blocks.",
}
QUESTION = "How many days does the Quillon festival last?"

# three long documents: retrieved together they hold far more than a 512-token context
LONG_DOCS = {
    topic: " ".join(f"{sentence} ({topic}, note {i})." for i in range(12) for sentence in sentences)
    for topic, sentences in {
        "lighthouse": [
            "The lighthouse of Varn stands on a granite cliff above the northern harbour",
            "Its keeper climbs one hundred and twelve steps every evening to light the lamp",
        ],
        "bakery": [
            "The bakery on Mill Street bakes rye bread before dawn",
            "Its ovens are heated with beech wood and the loaves rest in linen baskets",
        ],
        "canal": [
            "The old canal joins the river to the salt marshes in the south",
            "Barges once carried timber and wool along it to the coastal markets",
        ],
    }.items()
}


@pytest.fixture(scope="module")
def embed_model(model) -> AiroborosGGMLEmbedding:
    return AiroborosGGMLEmbedding(model=model)


@pytest.fixture(scope="module")
def chat_llm(n_ctx) -> AiroborosGGML:
    """The model's own ChatML template (prompt_format="auto") answers best; greedy and short for the test."""
    return AiroborosGGML(
        model_path="smollm2", n_ctx=n_ctx, n_threads=1, prompt_format="auto", temperature=0, max_tokens=32
    )


def build_index(docs: dict[str, str], embed_model) -> VectorStoreIndex:
    documents = [Document(text=text, metadata={"topic": topic}) for topic, text in docs.items()]
    return VectorStoreIndex.from_documents(documents, embed_model=embed_model)


@pytest.fixture(scope="module")
def index(embed_model) -> VectorStoreIndex:
    return build_index(DOCS, embed_model)


def test_retrieval_puts_the_relevant_document_first(index):
    for topic, question in [
        ("festival", QUESTION),
        ("rome", "Who was the first Roman emperor?"),
        ("gguf", "What does the GGUF format store?"),
    ]:
        nodes = index.as_retriever(similarity_top_k=3).retrieve(question)
        assert nodes[0].node.metadata["topic"] == topic, question


def test_streaming_query_engine_answers_with_sources(index, chat_llm):
    engine = index.as_query_engine(llm=chat_llm, streaming=True, similarity_top_k=2)
    response = engine.query(QUESTION)
    deltas = list(response.response_gen)
    assert len(deltas) > 1 and "".join(deltas).strip()
    assert response.source_nodes[0].node.metadata["topic"] == "festival"
    assert "nine" in "".join(deltas).lower() or "9" in "".join(deltas)


def test_chat_engine_holds_a_two_turn_conversation(index, chat_llm):
    engine = index.as_chat_engine(llm=chat_llm, similarity_top_k=2)  # condense-plus-context for a non-agent LLM
    first = engine.chat(QUESTION)
    assert first.response.strip() and first.source_nodes
    assert first.source_nodes[0].node.metadata["topic"] == "festival"
    second = engine.chat("What do people eat during that festival?")
    assert second.response.strip() and second.source_nodes
    assert [m.role.value for m in engine.chat_history] == ["user", "assistant", "user", "assistant"]


@pytest.fixture
def token_counter():
    """A TokenCountingHandler on LlamaIndex's global callback manager (query engines install that one)."""
    counter = TokenCountingHandler()
    saved = Settings.callback_manager
    Settings.callback_manager = CallbackManager([counter])
    yield counter
    Settings.callback_manager = saved


def test_small_context_window_is_respected_by_the_prompt_helper(embed_model, token_counter):
    """n_ctx 512, three retrieved documents of ~300 tokens each: LlamaIndex trims them to what fits."""
    llm = AiroborosGGML(model_path="smollm2", n_ctx=512, n_threads=1, prompt_format="auto", temperature=0)
    index = build_index(LONG_DOCS, embed_model)
    engine = index.as_query_engine(llm=llm, similarity_top_k=3, response_mode="simple_summarize")
    response = engine.query("How many steps does the keeper of the lighthouse climb?")
    retrieved = sum(len(llm.tokenize(node.node.get_content())) for node in response.source_nodes)
    assert len(response.source_nodes) == 3 and retrieved > 512
    assert str(response).strip()
    (call,) = token_counter.llm_token_counts  # prompt and completion as the model counted them (raw["usage"])
    assert call.prompt_token_count + call.completion_token_count <= 512
