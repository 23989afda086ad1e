"""Stop strings, identical streamed and not streamed.

Generation stops as soon as any stop string has been produced, and the output is cut right before
it. "First" means first to *complete*: text is produced left to right, so the stop string that ends
earliest is the one generation runs into (among several ending at the same place, the one starting
earliest, i.e. the longest, is cut). :func:`truncate_at_stop` applies this to a whole text and
:class:`StopMatcher` to a stream of text deltas, holding back any tail that could still become a stop
string; for every way of splitting a text into deltas the streamed pieces concatenate to exactly the
non-streamed result. Empty stop strings are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["StopMatcher", "truncate_at_stop"]


def _clean(stops: Iterable[str]) -> list[str]:
    return sorted({s for s in stops if s}, key=len, reverse=True)


def _first_stop(text: str, stops: list[str]) -> int | None:
    """Return where to cut ``text`` for the stop string that ends first, or None when none occurs."""
    best_end, best_start = None, None
    for s in stops:
        i = text.find(s)
        if i < 0:
            continue
        end = i + len(s)
        if best_end is None or end < best_end or (end == best_end and i < best_start):
            best_end, best_start = end, i
    return best_start


def truncate_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string to complete.

    Args:
        text: the generated text.
        stops: stop strings; empty ones are ignored.

    Returns:
        ``(text before the stop, True)`` if a stop string occurs, else ``(text, False)``.
    """
    cut = _first_stop(text, _clean(stops))
    return (text, False) if cut is None else (text[:cut], True)


class StopMatcher:
    """Streaming stop-string detection.

    Feed each new piece of text to :meth:`push`; it returns the text that is safe to show. Text that
    could be the beginning of a stop string is held back until it is known not to be one. Call
    :meth:`flush` when generation ends to get whatever is still held back.

    Example:
        >>> m = StopMatcher(["USER:"])
        >>> m.push("Paris. US"), m.push("ER: next"), m.flush()
        (('Paris. ', False), ('', True), '')
    """

    def __init__(self, stops: Iterable[str]):
        self.stops = _clean(stops)
        self.stopped = False
        self._held = ""

    def _held_tail(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def push(self, delta: str) -> tuple[str, bool]:
        """Add newly generated text.

        Returns:
            ``(text safe to emit now, stopped)``. Once stopped, later pushes return ``("", True)`` and
            generation should end.
        """
        if self.stopped:
            return "", True
        text = self._held + delta
        cut = _first_stop(text, self.stops)
        if cut is not None:
            self.stopped, self._held = True, ""
            return text[:cut], True
        keep = self._held_tail(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """End of generation: return the held-back text (nothing if a stop string was found)."""
        held, self._held = self._held, ""
        return held
