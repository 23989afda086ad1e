"""Results of generation: streamed chunks and completed calls."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..constrain.tools import ToolCall

FinishReason = Literal["stop", "length", "tool_calls"]
"""``"stop"``: EOS/end-of-turn or a stop string; ``"length"``: max_tokens or the context is full (also
inside an unfinished constrained structure); ``"tool_calls"``: the model called tools."""


@dataclasses.dataclass(frozen=True)
class Usage:
    """Token counts of one call."""

    prompt_tokens: int
    """Tokens of the prompt (BOS included)."""
    completion_tokens: int
    """Tokens generated."""
    cached_tokens: int = 0
    """Prompt tokens whose keys/values were reused from the previous call instead of evaluated."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass(frozen=True)
class Timings:
    """Wall-clock timings of one call."""

    prompt_s: float
    """Seconds spent evaluating the prompt (the part not reused from the cache)."""
    prompt_evaluated: int
    """Prompt tokens actually evaluated."""
    generation_s: float
    """Seconds spent generating (sampling + one-token evaluations)."""
    generated: int
    """Tokens generated."""

    @property
    def prompt_tokens_per_s(self) -> float:
        """Prompt evaluation speed."""
        return self.prompt_evaluated / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def generation_tokens_per_s(self) -> float:
        """Generation speed."""
        return self.generated / self.generation_s if self.generation_s > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One streamed piece of output.

    The new text and the tokens that produced it; the last chunk also says why generation ended.
    """

    text: str
    """New text only (text that could begin a stop string is held back until resolved)."""
    token_ids: tuple[int, ...]
    """Tokens generated since the previous chunk."""
    finish_reason: FinishReason | None = None
    """Set on the last chunk only."""
    usage: Usage | None = None
    """Set on the last chunk only."""
    timings: Timings | None = None
    """Set on the last chunk only."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model called (last chunk only; the call's markup never appears in ``text``)."""


@dataclasses.dataclass(frozen=True)
class Completion:
    """The result of :meth:`Model.complete` or :meth:`Model.chat`."""

    text: str
    """Generated text, cut before the first stop string."""
    tokens: list[int]
    """Generated token ids (including those of a stop string, excluding EOS)."""
    finish_reason: FinishReason
    """Why generation ended."""
    usage: Usage
    """Token counts."""
    timings: Timings
    """Speeds."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model called (``chat`` with ``tools``); ``text`` is then empty."""
