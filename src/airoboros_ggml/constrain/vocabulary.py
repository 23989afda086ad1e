r"""Our tokenizer as llguidance sees it: the bytes of every token id, special ids, and an exact encoder.

llguidance takes a duck-typed tokenizer object (``is_tokenizer_wrapper = True``) with ``tokens`` (the bytes
each id decodes to: SentencePiece ``▁`` -> space, ``<0x0A>`` -> newline, GPT-2 byte-level pieces -> their
bytes), ``eos_token_id``, ``bos_token_id``, ``special_token_ids`` and ``__call__(str) -> list[int]``.
Special tokens (control and unknown tokens, and user-defined ones written like ``<...>``) are written as
``b"\xff" + text``, the convention llguidance and llama.cpp's bridge use, so no text can match them.

The :class:`llguidance.LLTokenizer` built from it (50-800 ms for 32k-50k ids) is made once per
:class:`~airoboros_ggml.tokenizer.Tokenizer` and cached.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..tokenizer import Tokenizer
from ..vocab import TokenType

if TYPE_CHECKING:
    import llguidance

log = logging.getLogger(__name__)

SPECIAL_PREFIX = b"\xff"
"""Prefix of a special token's bytes in llguidance's token list (not valid UTF-8, so text never matches)."""

_SPECIAL_TYPES = (TokenType.CONTROL, TokenType.UNKNOWN)


def token_bytes(tokenizer: Tokenizer, n_vocab: int | None = None) -> list[bytes]:
    r"""The bytes each token id writes, as llguidance wants them.

    Args:
        tokenizer: the model's tokenizer.
        n_vocab: pad the list with ``b""`` to this width (the logits' width, when it exceeds the
            vocabulary).

    Returns:
        One ``bytes`` per id: the text bytes of normal, byte and user-defined tokens; ``b"\xff" + piece``
        for special tokens (see :func:`special_token_ids`).
    """
    types = tokenizer.vocab.token_types.tolist()
    out = []
    for i, ttype in enumerate(types):
        if _is_special(tokenizer, i, ttype):
            out.append(SPECIAL_PREFIX + tokenizer.token_to_piece(i).encode("utf-8"))
        else:
            out.append(tokenizer.token_to_bytes(i))
    width = max(n_vocab or 0, len(out))
    return out + [b""] * (width - len(out))


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of special tokens: control and unknown tokens, and user-defined tokens written like ``<...>``."""
    types = tokenizer.vocab.token_types.tolist()
    return [i for i, ttype in enumerate(types) if _is_special(tokenizer, i, ttype)]


def _is_special(tokenizer: Tokenizer, token_id: int, ttype: int) -> bool:
    if ttype in _SPECIAL_TYPES:
        return True
    if ttype == TokenType.USER_DEFINED:  # llama.cpp's bridge: user-defined tokens that look like control ones
        piece = tokenizer.token_to_piece(token_id)
        return len(piece) > 2 and piece[0] == "<" and piece[-1] == ">"
    return False


class TokenizerForLLGuidance:
    """The duck-typed tokenizer object ``llguidance.LLTokenizer`` accepts.

    Args:
        tokenizer: the model's tokenizer.
        n_vocab: the logits' width (the token list is padded to it).
    """

    is_tokenizer_wrapper = True

    def __init__(self, tokenizer: Tokenizer, n_vocab: int | None = None) -> None:
        self._tokenizer = tokenizer
        self.tokens = token_bytes(tokenizer, n_vocab)
        self.special_token_ids = special_token_ids(tokenizer)
        self.eos_token_id = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.eog_ids[0]
        self.bos_token_id = tokenizer.bos_id
        self._byte_ids: dict[int, int] | None = None

    def __call__(self, text: str) -> list[int]:
        """Token ids whose bytes are exactly ``text``'s (no BOS, no dummy-prefix space).

        Called by llguidance from Rust: an exception here would become a panic, so it never raises; on
        an encoder failure it falls back to one single-byte token per byte.
        """
        try:
            return self._tokenizer.encode_exact(text)
        except Exception:  # noqa: BLE001 - must not propagate into llguidance
            log.exception("encoder failed on %r; falling back to single-byte tokens", text[:80])
            return self._bytewise(text.encode("utf-8", errors="replace"))

    def _bytewise(self, data: bytes) -> list[int]:
        if self._byte_ids is None:
            self._byte_ids = {}
            for i, tok in enumerate(self.tokens):
                if len(tok) == 1:
                    self._byte_ids.setdefault(tok[0], i)
        return [self._byte_ids[b] for b in data if b in self._byte_ids]


_cache: weakref.WeakKeyDictionary[Tokenizer, dict[int, Any]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def ll_tokenizer(tokenizer: Tokenizer, n_vocab: int | None = None) -> llguidance.LLTokenizer:
    """The ``llguidance.LLTokenizer`` of a tokenizer, built on first use and cached while it lives.

    Args:
        tokenizer: the model's tokenizer.
        n_vocab: the logits' width (default: the vocabulary size).

    Returns:
        A tokenizer whose end-of-sequence ids are every id that ends generation (EOS, EOT, ``<|im_end|>``).
    """
    import llguidance

    width = max(n_vocab or 0, tokenizer.n_vocab)
    with _cache_lock:
        per_width = _cache.setdefault(tokenizer, {})
        if width not in per_width:
            wrapper = TokenizerForLLGuidance(tokenizer, width)
            eos = tokenizer.eog_ids or [wrapper.eos_token_id]
            per_width[width] = llguidance.LLTokenizer(wrapper, n_vocab=width, eos_token=eos)
        return per_width[width]
