"""The one thread that runs every parallel kernel of the process.

numba's OpenMP threading layer (libgomp) gives each thread that enters a parallel region its own team of
worker threads. Once a second team exists (a model used from the main thread and from a scheduler thread,
or LangChain/asyncio calls arriving on several executor threads), libgomp counts more threads than cores and
stops letting idle workers spin: every one of the ~130 parallel regions of a decode step then waits for its
workers to be woken by the kernel. Measured on 2 cores, SmolLM2 Q4_1, 32-token prompt + 32 tokens: 0.47-0.55
s per request from one thread, 0.95-1.24 s once a second thread had run a kernel (and for the rest of the
process). Handing every evaluation to one long-lived thread keeps one team; the hand-off costs a queue put
and a future wait per call (tens of microseconds against a 10+ ms decode step).

``run`` is re-entrant (a call made on the compute thread runs at once) and fork-safe (a child process starts
its own thread on first use).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_NAME = "airoboros-ggml-compute"

_start_lock = threading.Lock()
_jobs: queue.SimpleQueue | None = None  # (fn, args, kwargs, future) items for the compute thread
_owner_pid: int | None = None  # the process that started the thread (a forked child starts its own)
_local = threading.local()


def _loop(jobs: queue.SimpleQueue) -> None:
    _local.is_compute_thread = True
    while True:
        fn, args, kwargs, future = jobs.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller, who re-raises it
            future.set_exception(e)


def _queue() -> queue.SimpleQueue:
    global _jobs, _owner_pid
    with _start_lock:
        if _jobs is None or _owner_pid != os.getpid():
            _jobs, _owner_pid = queue.SimpleQueue(), os.getpid()
            threading.Thread(target=_loop, args=(_jobs,), name=THREAD_NAME, daemon=True).start()
        return _jobs


def on_compute_thread() -> bool:
    """Whether the calling thread is the compute thread."""
    return getattr(_local, "is_compute_thread", False)


def run(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Return ``fn(*args, **kwargs)`` evaluated on the compute thread; exceptions are re-raised here.

    Calls from several threads run one after another, in the order they arrive.
    """
    if on_compute_thread():
        return fn(*args, **kwargs)
    future: Future = Future()
    _queue().put((fn, args, kwargs, future))
    return future.result()
