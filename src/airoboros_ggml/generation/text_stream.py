"""From generated tokens to text chunks: incremental detokenizing, end-of-generation tokens and stop strings.

:func:`text_chunks` consumes :class:`~.steps.Step` objects and stops pulling as soon as generation is over
(an end-of-generation token, a completed stop string), so the step generator never evaluates a token
nobody will continue from. Usage counts and timings are the caller's (it knows the prompt and the clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..tokenizer import Tokenizer
from .results import Chunk, FinishReason
from .steps import Step
from .stops import StopMatcher

__all__ = ["ChunkAssembler", "text_chunks"]


class ChunkAssembler:
    """Turns one sequence's tokens, pushed one at a time, into :class:`Chunk` objects of new text.

    For a loop that pulls steps use :func:`text_chunks`; a scheduler that decodes many sequences pushes
    each sequence's tokens into its own assembler.

    Args:
        tokenizer: decodes the tokens (as continuing text: no leading-space removal).
        stop: stop strings; the text is cut before the first one to complete, and text that could begin one
            is held back until resolved.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.finish_reason: FinishReason | None = None
        """Set once generation is over (the final chunk has been returned)."""
        self._detok = tokenizer.stream(at_start=False)
        self._stops = StopMatcher(stop)
        self._pending: list[int] = []  # tokens not yet reported in a chunk

    def push(self, token: int) -> Chunk | None:
        """Add a generated token.

        Returns:
            None while its text is held back (an incomplete character, a possible stop string); a chunk of
            new text; or the final chunk (``finish_reason`` ``"stop"``) when the token ends generation: an
            end-of-generation token (reported in no chunk) or the completion of a stop string.
        """
        if self.tokenizer.is_eog(token):
            return self.finish("stop")
        self._pending.append(token)
        text, stopped = self._stops.push(self._detok.feed(token))
        if stopped:
            self.finish_reason = "stop"
            return self._take(text, "stop")
        return self._take(text, None) if text else None

    def finish(self, reason: FinishReason = "length") -> Chunk:
        """End generation (``"length"``: out of steps): the final chunk with whatever text was held back."""
        if self._stops.stopped:
            return self._take("", "stop")
        tail, stopped = self._stops.push(self._detok.flush())  # an incomplete UTF-8 tail
        self.finish_reason = "stop" if stopped else reason
        return self._take(tail + self._stops.flush(), self.finish_reason)

    def _take(self, text: str, finish: FinishReason | None) -> Chunk:
        chunk = Chunk(text, tuple(self._pending), finish)
        self._pending = []
        return chunk


def text_chunks(steps: Iterable[Step], tokenizer: Tokenizer, stop: Sequence[str] = ()) -> Iterator[Chunk]:
    """Turn steps into :class:`Chunk` objects with only the new text (see :class:`ChunkAssembler`).

    Args:
        steps: generated tokens, e.g. a :class:`~.steps.StepGenerator`; none is pulled after the one that
            ends generation.
        tokenizer: decodes the tokens.
        stop: stop strings.

    Yields:
        Chunks of new text with the tokens that produced them; the last one (always yielded, possibly
        empty) has ``finish_reason``: ``"stop"`` for an end-of-generation token or a stop string,
        ``"length"`` when the steps ran out.
    """
    assembler = ChunkAssembler(tokenizer, stop)
    for step in steps:
        chunk = assembler.push(step.token)
        if chunk is not None:
            yield chunk
            if chunk.finish_reason is not None:
                return
    yield assembler.finish()
