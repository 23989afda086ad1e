"""The OpenAI-compatible HTTP app over one :class:`~airoboros_ggml.Model` (FastAPI).

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(both streamed as server-sent events with ``"stream": true``) and ``POST /v1/embeddings``. Generation runs
through the model's async twins, so the event loop never waits for the engine; a model loaded with several
sequence slots (``n_seq``) decodes concurrent requests together. A client that disconnects mid-stream
closes its generation, which frees its slot at the next step.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from ..generation.results import Chunk
from ..model import Model
from .errors import APIError, install_error_handlers, sse_error
from .limits import Admission, BodyLimit
from .schemas import ChatRequest, CompletionRequest, EmbeddingRequest
from .settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(model: Model, settings: ServerSettings | None = None, **overrides: Any) -> FastAPI:
    """The app serving ``model``.

    Args:
        model: the loaded model (the app never closes it).
        settings: server settings.
        **overrides: :class:`ServerSettings` fields replacing the given ones (``api_key=...``).

    Returns:
        A FastAPI app; run it with uvicorn (see :func:`airoboros_ggml.serve.run_server`).
    """
    settings = (settings or ServerSettings()).model_copy(update=overrides)
    settings = ServerSettings.model_validate(settings.model_dump())
    name = settings.model_name or model.file.path.name.split(".gguf")[0].removesuffix(".bin")
    admission = Admission(settings.max_in_flight)
    created = int(time.time())

    async def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def check_model(requested: str | None) -> None:
        if requested is not None and requested != name:
            raise APIError(404, f"the model {requested!r} does not exist; this server serves {name!r}",
                           "model_not_found", "model")

    def admit() -> None:
        if not admission.enter():
            raise APIError(503, f"the server is busy ({admission.limit} requests in flight); retry later",
                           "server_busy", headers={"Retry-After": str(settings.retry_after_s)})

    def max_tokens(requested: int | None) -> int:
        return settings.max_tokens_limit if requested is None else min(requested, settings.max_tokens_limit)

    app = FastAPI(title="airoboros-ggml", summary="OpenAI-compatible API over a GGML/GGUF Llama model")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.state.model = model
    app.state.settings = settings
    app.state.model_name = name
    app.state.admission = admission
    v1 = [Depends(authorize)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "in_flight": admission.in_flight}

    @app.get("/v1/models", dependencies=v1)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(name, created)]}

    @app.get("/v1/models/{model_id}", dependencies=v1)
    async def model_card(model_id: str) -> dict[str, Any]:
        check_model(model_id)
        return _model_card(name, created)

    @app.post("/v1/completions", dependencies=v1)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        check_model(body.model)
        prompts = body.prompts()
        if body.stream and len(prompts) != 1:
            raise APIError(400, "a streamed completion takes one prompt", "invalid_value", "prompt")
        sampling = {**body.sampling(), "max_tokens": max_tokens(body.max_tokens)}
        admit()
        echo = [p if body.echo and isinstance(p, str) else "" for p in prompts]
        reply = _Reply("cmpl", "text_completion", name)
        if body.stream:
            try:
                stream = await _start(model.astream(prompts[0], **sampling))
            except BaseException:
                admission.leave()
                raise
            return _sse(_completion_events(reply, stream, echo[0], _include_usage(body)), admission)

        async def one(prompt: str | list[int]) -> tuple[str, Chunk]:
            return await _finish(await _start(model.astream(prompt, **sampling)), request)

        try:
            if model.n_seq > 1:  # decoded together
                outcomes = await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
                _raise_first(outcomes)
                results = list(outcomes)
            else:  # one after another: a started stream holds the model until it ends
                results = [await one(p) for p in prompts]
        finally:
            admission.leave()
        choices = [
            {"index": i, "text": echo[i] + text, "finish_reason": last.finish_reason, "logprobs": None}
            for i, (text, last) in enumerate(results)
        ]
        return reply.body(choices, _usage([last for _, last in results]))

    @app.post("/v1/chat/completions", dependencies=v1)
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        check_model(body.model)
        try:
            messages = [m.core() for m in body.messages]
        except ValueError as e:
            raise APIError(400, str(e), "invalid_value", "messages") from None
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        sampling = {**body.sampling(), "max_tokens": max_tokens(limit)}
        if body.tools is not None:
            sampling["tools"] = body.tools
        if body.tool_choice is not None:
            sampling["tool_choice"] = body.tool_choice
        admit()
        try:
            stream = await _start(model.astream_chat(messages, **sampling))
        except BaseException:
            admission.leave()
            raise
        reply = _Reply("chatcmpl", "chat.completion", name)
        if body.stream:
            return _sse(_chat_events(reply, stream, _include_usage(body)), admission)
        try:
            text, last = await _finish(stream, request)
        finally:
            admission.leave()
        calls = _tool_calls(last)
        message = {"role": "assistant", "content": None if calls else text}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": last.finish_reason, "logprobs": None}
        return reply.body([choice], _usage([last]))

    @app.post("/v1/embeddings", dependencies=v1)
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        check_model(body.model)
        inputs = body.inputs()
        admit()
        try:
            vectors = await model.aembed_batch(inputs)  # float32 (n_inputs, n_embd)
            n_tokens = sum(len(model.tokenizer.tokenize(x, add_bos=True, special=True)) if isinstance(x, str)
                           else len(x) for x in inputs)
        except ValueError as e:
            raise APIError.from_generation(e) from None
        finally:
            admission.leave()
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}

    return app


# ---------------------------------------------------------------------------------------------- generation


class _Started:
    """A generation whose first chunk has arrived (so its errors were raised before any response)."""

    def __init__(self, first: Chunk, rest: AsyncIterator[Chunk]):
        self.first = first
        self.rest = rest

    async def chunks(self) -> AsyncIterator[Chunk]:
        yield self.first
        if self.first.finish_reason is None:
            async for chunk in self.rest:
                yield chunk

    async def aclose(self) -> None:
        await self.rest.aclose()  # type: ignore[attr-defined]


async def _start(chunks: AsyncIterator[Chunk]) -> _Started:
    """Wait for the first chunk; errors of the request (bad options, prompt too long) become 400s."""
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:  # pragma: no cover - a stream always ends with a final chunk
        raise APIError(500, "generation produced no output") from None
    except Exception as e:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise APIError.from_generation(e) from None
    return _Started(first, chunks)


def _raise_first(results: list[Any]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


async def _finish(stream: _Started, request: Request) -> tuple[str, Chunk]:
    """Run a generation to its end; stop it (and free its slot) when the client disconnects."""
    texts = []
    last = stream.first
    try:
        async for chunk in stream.chunks():
            texts.append(chunk.text)
            last = chunk
            if chunk.finish_reason is None and await request.is_disconnected():
                log.info("client left: generation stopped")
                break
    finally:
        await stream.aclose()
    return "".join(texts), last


class _Reply:
    """Id, object type and model name of one response (and of each of its streamed chunks)."""

    def __init__(self, prefix: str, kind: str, model: str):
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())

    def body(self, choices: list[dict[str, Any]], usage: dict[str, int] | None, kind: str | None = None) -> dict:
        return {"id": self.id, "object": kind or self.kind, "created": self.created, "model": self.model,
                "choices": choices, "usage": usage}


def _usage(finals: list[Chunk]) -> dict[str, int]:
    prompt = sum(c.usage.prompt_tokens for c in finals if c.usage is not None)
    completion = sum(c.usage.completion_tokens for c in finals if c.usage is not None)
    cached = sum(c.usage.cached_tokens for c in finals if c.usage is not None)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _tool_calls(chunk: Chunk) -> list[dict[str, Any]]:
    """OpenAI's ``tool_calls`` of a final chunk (the constrained-generation field; none without it)."""
    calls = getattr(chunk, "tool_calls", ()) or ()
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls]


def _include_usage(body: CompletionRequest | ChatRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector.tolist()


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "airoboros-ggml"}


# ---------------------------------------------------------------------------------------------- streaming


def _sse(events: AsyncIterator[dict[str, Any]], admission: Admission) -> StreamingResponse:
    """Server-sent events: one ``data:`` line per event, then ``data: [DONE]``; the admission ends with it."""

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except APIError as e:  # pragma: no cover - errors are raised before the first chunk
            yield sse_error(e)
        finally:
            admission.leave()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(lines(), media_type="text/event-stream", headers=headers)


async def _completion_events(
    reply: _Reply, stream: _Started, echo: str, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    try:
        if echo:
            yield reply.body([{"index": 0, "text": echo, "finish_reason": None, "logprobs": None}], None)
        async for chunk in stream.chunks():
            choice = {"index": 0, "text": chunk.text, "finish_reason": chunk.finish_reason, "logprobs": None}
            yield reply.body([choice], None)
            last = chunk
    finally:
        await stream.aclose()
    if include_usage:
        yield reply.body([], _usage([last]))


async def _chat_events(reply: _Reply, stream: _Started, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    kind = "chat.completion.chunk"

    def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return reply.body([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], None, kind)

    yield event({"role": "assistant", "content": ""})
    try:
        async for chunk in stream.chunks():
            if chunk.text:
                yield event({"content": chunk.text})
            last = chunk
    finally:
        await stream.aclose()
    calls = _tool_calls(last)
    if calls:
        yield event({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]})
    yield event({}, last.finish_reason)
    if include_usage:
        yield reply.body([], _usage([last]), kind)
