"""The grammar logits processor: an llguidance matcher that masks, step by step, the tokens a grammar forbids.

Follows the logits-processor contract of :mod:`airoboros_ggml.generation`: ``processor(tokens, logits)``
with ``tokens`` the prompt plus the tokens generated so far and ``logits`` float32 ``(n_vocab,)``, modified
in place and returned. The first call records the prompt length; every later call first advances the
matcher over the tokens appended since (normally ``tokens[-1]``; several after a batch of forced tokens).
Once the grammar is complete, only the end-of-generation tokens (EOS, ``<|im_end|>``, ...) stay allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import GrammarError
from ..tokenizer import Tokenizer
from .bitmask import apply_bitmask, bitmask_words
from .vocabulary import ll_tokenizer

log = logging.getLogger(__name__)


class GrammarLogitsProcessor:
    """Masks the logits of tokens that cannot continue a sentence of the grammar.

    Args:
        tokenizer: the model's tokenizer.
        grammar: llguidance grammar text (from :mod:`airoboros_ggml.constrain.grammars`).
        n_vocab: the logits' width.

    Raises:
        GrammarError: llguidance cannot build a matcher of the grammar for this vocabulary.
    """

    def __init__(self, tokenizer: Tokenizer, grammar: str, n_vocab: int) -> None:
        import llguidance

        self.n_vocab = n_vocab
        self._matcher = llguidance.LLMatcher(ll_tokenizer(tokenizer, n_vocab), grammar, log_level=0)
        self._check("cannot constrain generation")
        self._bitmask = np.full(bitmask_words(n_vocab), -1, dtype=np.int32)  # int32 (n_words,)
        self._seen: int | None = None

    def __call__(self, tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        """Advance over the tokens added since the last call, then mask ``logits`` (float32 (n_vocab,))."""
        self.advance(tokens)
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        self._check("mask computation failed")
        apply_bitmask(logits, self._bitmask)
        return logits

    def advance(self, tokens: Sequence[int]) -> None:
        """Consume the tokens appended to ``tokens`` since the previous call (none on the first call)."""
        if self._seen is None:
            self._seen = len(tokens)
            return
        new = [int(t) for t in tokens[self._seen :]]
        self._seen = len(tokens)
        if new and not self._matcher.consume_tokens(new):
            self._check(f"token(s) {new} rejected")

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces next (llguidance's fast-forward tokens), which may be evaluated in one batch."""
        return list(self._matcher.compute_ff_tokens())

    @property
    def is_accepting(self) -> bool:
        """The output so far is a complete sentence of the grammar (it may still go on)."""
        return self._matcher.is_accepting()

    @property
    def is_stopped(self) -> bool:
        """The grammar allows nothing more than an end-of-generation token."""
        return self._matcher.is_stopped()

    def _check(self, what: str) -> None:
        if self._matcher.is_error():
            raise GrammarError(f"{what}: {self._matcher.get_error()}")
