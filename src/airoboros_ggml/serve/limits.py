"""What keeps one client from hurting the others: a request body limit and an admission counter."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["Admission", "BodyLimit"]


class BodyLimit:
    """ASGI middleware: a request whose body exceeds ``max_bytes`` answers 413 before the app sees it.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is read (at most
    ``max_bytes + 1`` bytes kept) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body, then call the app with a receive that replays it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server's receive does

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(error_body(413, f"the request body exceeds {self.max_bytes} bytes")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Admission:
    """Counts requests in flight (waiting or generating); beyond ``limit`` new ones are refused (503).

    Thread-safe. Use as ``if not admission.enter(): refuse`` ... ``admission.leave()``.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0
        """Requests admitted and not yet finished."""
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Admit one more request unless ``limit`` are in flight."""
        with self._lock:
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        """A request admitted by :meth:`enter` has finished."""
        with self._lock:
            self.in_flight -= 1
