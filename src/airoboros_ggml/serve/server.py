"""Running the app with uvicorn: localhost by default, in-flight requests drained on SIGTERM/Ctrl-C."""

from __future__ import annotations

import logging

from ..model import Model
from .app import create_app
from .settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["run_server"]


def run_server(
    model: Model,
    settings: ServerSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    drain_timeout_s: float | None = 300.0,
) -> None:
    """Serve ``model`` until SIGTERM or Ctrl-C, then stop accepting and finish the requests in flight.

    Args:
        model: the loaded model.
        settings: what clients may do (API key, limits).
        host: interface to bind; the default answers only this machine (``0.0.0.0`` for every interface).
        port: TCP port.
        drain_timeout_s: longest wait for in-flight requests at shutdown (None: no limit).
    """
    import uvicorn

    app = create_app(model, settings)
    log.info("serving %r as %r on http://%s:%d/v1", model, app.state.model_name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=drain_timeout_s)
