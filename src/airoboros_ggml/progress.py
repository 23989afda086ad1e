"""Progress bars for long operations: shown on a terminal, silent when piped, in scripts or when asked."""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

_LOG = logging.getLogger("airoboros_ggml")


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` when given, else stderr is a terminal and INFO logging is on.

    ``--quiet`` sets the package logger to WARNING, which turns every automatic bar off.
    """
    if progress is not None:
        return progress
    return sys.stderr.isatty() and _LOG.isEnabledFor(logging.INFO)


def progress_bar(total: float | None, desc: str, *, progress: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (disabled unless :func:`progress_enabled`); use it as a context manager."""
    return tqdm(total=total, desc=desc, disable=not progress_enabled(progress), file=sys.stderr,
                dynamic_ncols=True, leave=False, **kwargs)
