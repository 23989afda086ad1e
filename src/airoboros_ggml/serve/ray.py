"""Scale-out on Ray Serve: the same app in ``num_replicas`` replicas, each loading the model once.

Ray's HTTP proxy balances requests across the replicas (needs the ``ray`` extra:
``pip install 'airoboros-ggml[ray]'``)::

    from ray import serve
    from airoboros_ggml.serve.ray import build_app

    serve.run(build_app("model.gguf", num_replicas=2, n_seq=4))   # http://127.0.0.1:8000/v1/...
"""

from __future__ import annotations

from typing import Any

from .settings import ServerSettings

__all__ = ["build_app"]


def build_app(
    model_path: str,
    *,
    num_replicas: int = 1,
    settings: ServerSettings | None = None,
    ray_actor_options: dict[str, Any] | None = None,
    prompt_format: str = "auto",
    **load_options: Any,
) -> Any:
    """A Ray Serve application serving ``model_path`` with the OpenAI-compatible app of :mod:`.app`.

    Args:
        model_path: the model file (or ``smollm2``), readable from every Ray node that runs a replica.
        num_replicas: replicas, each a process with its own copy of the model.
        settings: server settings of every replica (API key, limits).
        ray_actor_options: Ray resources of one replica (default: ``{"num_cpus": n_threads or 1}``).
        prompt_format: the chat template (``auto``: the file's own).
        **load_options: :func:`airoboros_ggml.load` options of every replica (``n_ctx``, ``n_seq``, ...).

    Returns:
        A ``ray.serve.Application`` for ``serve.run``.
    """
    from ray import serve

    from ..runtime.options import LoadOptions

    LoadOptions(**load_options)  # a bad option fails here, not in every replica
    settings_data = (settings or ServerSettings()).model_dump()
    actor_options = ray_actor_options or {"num_cpus": load_options.get("n_threads") or 1}

    def build_asgi_app() -> Any:  # runs in each replica
        from ..model import load
        from .app import create_app

        model = load(model_path, prompt_format=prompt_format, **load_options)
        return create_app(model, ServerSettings(**settings_data))

    deployment = serve.deployment(
        serve.ingress(build_asgi_app)(),
        name="airoboros-ggml",
        num_replicas=num_replicas,
        ray_actor_options=actor_options,
    )
    return deployment.bind()
