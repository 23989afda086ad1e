"""Settings of the HTTP server (user-facing configuration, validated)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServerSettings"]


class ServerSettings(BaseModel):
    """What the server allows its clients; the model's own settings are its :func:`~airoboros_ggml.load` options."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model_name: str | None = None
    """The name ``/v1/models`` lists and requests must use (default: the model file's name without suffix)."""
    api_key: str | None = None
    """When set, every route but ``/health`` needs ``Authorization: Bearer <api_key>`` (401 otherwise)."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest request body accepted (413 beyond)."""
    max_tokens_limit: int = Field(default=4096, gt=0)
    """Cap of a request's ``max_tokens`` (also the default when a request gives none)."""
    max_in_flight: int = Field(default=64, gt=0)
    """Requests waiting or generating at once; beyond it new requests answer 503 with ``Retry-After``."""
    retry_after_s: int = Field(default=1, ge=0)
    """The ``Retry-After`` seconds of a 503."""
