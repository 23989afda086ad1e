"""LangChain's standard unit suites (construction, parameters, tool binding, structured-output wiring)."""

from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from langchain_airoboros_ggml import AiroborosGGMLEmbeddings, ChatAiroborosGGML


class TestChatAiroborosGGMLUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatAiroborosGGML]:
        return ChatAiroborosGGML

    @property
    def chat_model_params(self) -> dict:
        return {"model_path": "smollm2"}

    @property
    def supports_model_override(self) -> bool:
        return False  # one instance runs one loaded file


class TestAiroborosGGMLEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[AiroborosGGMLEmbeddings]:
        return AiroborosGGMLEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_path": "smollm2"}
