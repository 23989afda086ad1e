"""The ``airoboros-ggml`` command line: argument parsing for every command, nothing else."""

from __future__ import annotations

from .main import build_parser, console_main, main

__all__ = ["build_parser", "console_main", "main"]
