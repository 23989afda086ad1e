"""The ``airoboros-ggml`` command line: argument parsing for every command, nothing else."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
