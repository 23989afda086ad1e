"""Kernels specialised on a constant: a closure over it, jitted under a name of its own.

numba compiles a closure's free variables as constants (``if code == Q4_0:`` with ``code`` a closure
variable is decided before typing: the other branches' callees are never compiled) and caches one entry
per value. It keeps every value's entry of one closure in a single index file, though, and two processes
compiling *different* values at the same moment (the warm-up and its helper process do) can each write
their entry's machine code to the same data file: a later process could then load one value's kernel
for another. So each value gets its own name, hence its own index and data files, like a module-level
function: concurrent writers of one file then always write the same entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def jit_specialised(fn: Callable[..., Any], suffix: str, **options: Any) -> Callable[..., Any]:
    """``numba.njit(cache=True, **options)(fn)``, cached under ``fn``'s qualified name + ``_`` + ``suffix``."""
    fn.__qualname__ = f"{fn.__qualname__}_{suffix}"
    fn.__name__ = f"{fn.__name__}_{suffix}"
    return numba.njit(cache=True, **options)(fn)
