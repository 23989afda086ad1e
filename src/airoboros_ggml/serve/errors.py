"""OpenAI-shaped error responses: ``{"error": {"message", "type", "param", "code"}}``, never a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextOverflowError
from ..generation.options import format_validation_error

log = logging.getLogger(__name__)

__all__ = ["APIError", "error_body", "install_error_handlers"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    503: "overloaded_error",
}


class APIError(Exception):
    """An error answered with an OpenAI-shaped body.

    Args:
        status: HTTP status.
        message: what went wrong and what to do about it.
        code: OpenAI's machine-readable code (``invalid_api_key``, ``model_not_found``, ...).
        param: the request field at fault.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response of this error."""
        return JSONResponse(error_body(self.status, self.message, self.code, self.param), self.status, self.headers)

    @classmethod
    def from_generation(cls, error: Exception) -> APIError:
        """The 400 answer to an error the model raised before generating (bad option, prompt too long, grammar).

        Raises:
            Exception: ``error`` itself when it is not a request error (a bug: the caller's handler makes it a 500).
        """
        if isinstance(error, ValidationError):
            return cls(400, format_validation_error(error), "invalid_value")
        if isinstance(error, ContextOverflowError):
            return cls(400, str(error), "context_length_exceeded", "messages")
        if type(error).__name__ == "GrammarError" or isinstance(error, ValueError):
            return cls(400, str(error), "invalid_value")
        raise error


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The body OpenAI's API answers errors with."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _validation_message(error: RequestValidationError) -> tuple[int, str, str | None]:
    """Status, message and field of a request the schemas refused (400 for bad JSON, 422 otherwise)."""
    errors = error.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON", None
    lines, param = [], None
    for e in errors:
        loc = [str(part) for part in e.get("loc", ()) if part != "body"]
        name = ".".join(loc) or "body"
        param = param or name
        lines.append(f"{name}: {e.get('msg', 'invalid')}")
    return 422, "; ".join(lines), param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with an OpenAI-shaped body (unexpected ones: 500, logged, no traceback)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param = _validation_message(exc)
        return JSONResponse(error_body(status, message, "invalid_value", param), status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), 500)


def sse_error(error: APIError) -> bytes:
    """An error event for a stream that has already started (its status line is sent)."""
    return f"data: {json.dumps(error_body(error.status, error.message, error.code, error.param))}\n\n".encode()
