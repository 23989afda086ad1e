"""Running the app with uvicorn: localhost by default, in-flight requests drained on SIGTERM/Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

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
    with _exit_status_zero_after_sigterm():
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=drain_timeout_s)


@contextlib.contextmanager
def _exit_status_zero_after_sigterm() -> Iterator[None]:
    """Let a drained SIGTERM end the process normally (exit status 0).

    uvicorn catches SIGTERM, drains, restores the handler it found and raises the signal again; with the
    default handler the process would then die of it (status -15) after a clean shutdown. The handler
    installed here only logs. Signals can be handled in the main thread only; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: log.info("SIGTERM: requests in flight drained, exiting"))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
