"""LangChain's standard integration suites on SmolLM2-135M.

The xfails are answers a 135M model gets wrong although decoding keeps them well-formed (measured outcomes
in the package README).
"""

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests

from langchain_airoboros_ggml import AiroborosGGMLEmbeddings, ChatAiroborosGGML

from .conftest import CHAT, EMBEDDINGS

WRONG_ARGUMENT = "SmolLM2-135M calls magic_function with input=10 instead of 3 (a valid call, a wrong value)"


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
    def supports_json_mode(self) -> bool:
        return True

    @pytest.mark.xfail(reason=WRONG_ARGUMENT)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason=WRONG_ARGUMENT)
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason="JSON mode has no schema: SmolLM2-135M nests keys of its own instead of setup/punchline")
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(reason="with tool_choice='auto' SmolLM2-135M answers in text instead of calling get_weather")
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(
        reason="SmolLM2-135M needs 78 tokens for the Chinese call (the suite's budget is 48); given 128 it copies "
        "the Chinese name but writes the Japanese one as トラングルーチュッテド"
    )
    def test_unicode_tool_call_integration(self, model: BaseChatModel) -> None:
        super().test_unicode_tool_call_integration(model)


class TestAiroborosGGMLEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[AiroborosGGMLEmbeddings]:
        return AiroborosGGMLEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return EMBEDDINGS
