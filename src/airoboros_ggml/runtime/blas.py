"""Control of numpy's BLAS (OpenBLAS) thread count, so BLAS and numba threads do not fight for cores.

numpy exposes no API for this; like threadpoolctl, we find the OpenBLAS library numpy loaded and call
its ``*_set_num_threads``. When no OpenBLAS is found (another BLAS, another OS) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging

import numpy as np

log = logging.getLogger(__name__)

_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")


@functools.cache
def _openblas() -> tuple[object, object] | None:
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure numpy's BLAS is loaded
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, s) for s in _GETTERS if hasattr(lib, s)), None)
        if setter is not None and getter is not None:
            setter.argtypes = [ctypes.c_int]
            getter.restype = ctypes.c_int
            return setter, getter
    log.debug("no OpenBLAS found; BLAS threads are left as they are")
    return None


def set_blas_threads(n: int) -> None:
    """Set numpy's OpenBLAS thread count (no-op without OpenBLAS)."""
    fns = _openblas()
    if fns is not None and fns[1]() != n:
        fns[0](n)


def get_blas_threads() -> int | None:
    """Return numpy's OpenBLAS thread count, or None without OpenBLAS."""
    fns = _openblas()
    return None if fns is None else int(fns[1]())
