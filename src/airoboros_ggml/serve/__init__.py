"""The OpenAI-compatible HTTP server: ``create_app(model)`` (FastAPI) and ``run_server`` (uvicorn).

Needs the ``server`` extra: ``pip install 'airoboros-ggml[server]'``.
"""

from .app import create_app
from .server import run_server
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]
