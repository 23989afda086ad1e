"""Request bodies of the OpenAI-compatible routes, validated with pydantic.

Field names and meanings follow OpenAI's API reference; a few llama.cpp server extensions (``top_k``,
``min_p``, ``repeat_penalty``, ``grammar``) are accepted too. Unknown fields are ignored (clients send fields such as
``user`` or ``logprobs: false`` freely), bad values answer 422 with the field named. Options left out use the
model's defaults (llama.cpp's, see :class:`~airoboros_ggml.SamplingOptions`), not OpenAI's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatMessage", "ChatRequest", "CompletionRequest", "EmbeddingRequest", "StreamOptions"]


class StreamOptions(BaseModel):
    """``stream_options`` of a streamed request."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False
    """Send one more chunk before ``[DONE]`` with empty ``choices`` and the request's ``usage``."""


class _GenerationRequest(BaseModel):
    """Fields shared by ``/v1/completions`` and ``/v1/chat/completions``."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    """Model name (see ``/v1/models``); a name the server does not serve answers 404."""
    max_tokens: int | None = Field(default=None, ge=0)
    """Most tokens to generate; capped by the server's limit (also the default when left out)."""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    """Sampling temperature; 0 is greedy."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    top_k: int | None = Field(default=None, ge=0)
    """Extension: keep the k most likely tokens (0 disables)."""
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    """Extension: min-p sampling."""
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    """Extension: llama.cpp's repetition penalty (1 disables)."""
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    """Subtracted once from the logit of every token already present."""
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    """Subtracted from a token's logit once per occurrence."""
    logit_bias: dict[int, float] | None = None
    """Token id (a JSON string key) -> bias added to its logit."""
    stop: str | list[str] | None = None
    """Stop strings: the text is cut before the first one."""
    seed: int | None = None
    """Seed of a reproducible sampled generation."""
    n: int = Field(default=1, ge=1, le=1)
    """Choices per prompt: only 1 is supported."""
    stream: bool = False
    """Send the output as server-sent events."""
    stream_options: StreamOptions | None = None
    """Options of a streamed response."""
    response_format: dict[str, Any] | None = None
    """``{"type": "json_object"}`` or ``{"type": "json_schema", ...}`` where constrained generation is available."""
    grammar: str | None = None
    """Extension (as llama.cpp's server): a GBNF grammar the output must follow; an invalid one answers 400."""

    def sampling(self) -> dict[str, Any]:
        """The :class:`~airoboros_ggml.SamplingOptions` fields this request sets."""
        names = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "logit_bias", "stop", "seed", "response_format", "grammar")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class CompletionRequest(_GenerationRequest):
    """Body of ``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]]
    """A prompt (text or token ids), or a list of them (one choice each, generated in parallel when the
    model has several sequence slots)."""
    echo: bool = False
    """Prepend the prompt text to the completion."""

    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per choice."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    """Who speaks (``developer`` is read as ``system``)."""
    content: str | list[dict[str, Any]] | None = None
    """Text, or content parts of which only ``{"type": "text", "text": ...}`` is supported."""
    name: str | None = None
    """Optional speaker name."""
    tool_calls: list[dict[str, Any]] | None = None
    """Calls an assistant message made."""
    tool_call_id: str | None = None
    """The call a tool message answers."""

    def text(self) -> str:
        """The content as plain text.

        Raises:
            ValueError: a content part that is not text (images, audio).
        """
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"content parts of type {part.get('type')!r} are not supported (text only)")
            texts.append(part["text"])
        return "".join(texts)

    def core(self) -> dict[str, Any]:
        """The message as the core's chat dict (``role``, ``content`` and the optional fields given)."""
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role,
                                   "content": self.text()}
        for name in ("name", "tool_calls", "tool_call_id"):
            if getattr(self, name) is not None:
                message[name] = getattr(self, name)
        return message


class ChatRequest(_GenerationRequest):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    """The conversation so far."""
    max_completion_tokens: int | None = Field(default=None, ge=0)
    """OpenAI's newer name of ``max_tokens`` (wins when both are given)."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI-style function tools, where constrained generation is available."""
    tool_choice: str | dict[str, Any] | None = None
    """``"auto"``, ``"required"``, ``"none"`` or a named function."""


class EmbeddingRequest(BaseModel):
    """Body of ``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[int] | list[list[int]]
    """A text or token ids, or a list of them."""
    model: str | None = None
    """Model name (see ``/v1/models``)."""
    encoding_format: Literal["float", "base64"] = "float"
    """``float``: JSON numbers; ``base64``: little-endian float32 bytes (what the ``openai`` client asks for)."""

    def inputs(self) -> list[str | list[int]]:
        """The inputs, one embedding each."""
        x = self.input
        if isinstance(x, str):
            return [x]
        if x and all(isinstance(t, int) for t in x):
            return [list(x)]  # type: ignore[arg-type]
        return list(x)  # type: ignore[arg-type]
