"""Incremental, UTF-8-safe detokenization for streaming generation."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Tokenizer


class StreamDetokenizer:
    """Turns token ids fed one at a time into text, emitting only complete UTF-8 characters.

    A character split across byte tokens (emoji, CJK with byte fallback) is held back until its last byte
    arrives; invalid byte sequences become U+FFFD, never an exception. The concatenation of every
    :meth:`feed` result and :meth:`flush` equals ``tokenizer.detokenize(all_ids, ...)`` with the same
    ``special`` and ``at_start``.

    Args:
        tokenizer: the tokenizer whose vocabulary the ids belong to.
        special: render control tokens as their text (as :meth:`Tokenizer.detokenize`).
        at_start: the first id fed begins a sequence (its dummy-prefix space is dropped).
    """

    def __init__(self, tokenizer: Tokenizer, *, special: bool = False, at_start: bool = True) -> None:
        self._tokenizer = tokenizer
        self._special = special
        self._strip_next = at_start
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Add one token; return the text completed by it (possibly empty)."""
        data, self._strip_next = self._tokenizer._token_output(token_id, self._special, self._strip_next)
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Return what is still held back (an incomplete UTF-8 tail becomes U+FFFD) and reset."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
