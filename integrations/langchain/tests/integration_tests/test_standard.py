"""LangChain's standard integration suites on SmolLM2-135M."""

from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests

from langchain_airoboros_ggml import AiroborosGGMLEmbeddings, ChatAiroborosGGML

from .conftest import CHAT, EMBEDDINGS


class TestChatAiroborosGGMLIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatAiroborosGGML]:
        return ChatAiroborosGGML

    @property
    def chat_model_params(self) -> dict:
        return CHAT

    @property
    def supports_model_override(self) -> bool:
        return False  # one instance runs one loaded file

    @property
    def has_tool_calling(self) -> bool:
        return False  # until the core's constrained tool calls land

    @property
    def has_structured_output(self) -> bool:
        return False  # until the core's constrained decoding lands


class TestAiroborosGGMLEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[AiroborosGGMLEmbeddings]:
        return AiroborosGGMLEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return EMBEDDINGS
