"""The :class:`Tokenizer`: text <-> token ids for Llama (SentencePiece) and GPT-2-style BPE vocabularies."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import numpy as np

from ..errors import ModelFormatError
from ..vocab import TokenType, Vocab
from .bpe import BpeEncoder, decode_byte_level
from .spm import SPACE_SYMBOL, SpmEncoder, sentencepiece_pieces
from .stream import StreamDetokenizer

logger = logging.getLogger(__name__)

# Control tokens that end a turn in common chat formats (llama.cpp treats them as end-of-generation).
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>")
_UNKNOWN_OUTPUT = "\u2585".encode()  # what llama.cpp writes for the unknown token


class Tokenizer:
    """Text <-> token ids for a model file's vocabulary.

    Llama vocabularies (every GGML v3 file, GGUF ``tokenizer.ggml.model == "llama"``) are tokenized by the
    ``sentencepiece`` library running a BPE model rebuilt from the file's pieces, scores and token types.
    GGUF ``"gpt2"`` vocabularies use byte-level BPE with the pre-tokenizer named by ``tokenizer.ggml.pre``.

    Special tokens follow llama.cpp: the text is first split on special tokens (longest first) -- CONTROL
    and UNKNOWN tokens only when ``special=True``, USER_DEFINED tokens always -- and each remaining text
    fragment is tokenized separately; with a dummy-prefix vocabulary (Llama) every fragment gets the
    prefix space, the first one and those following a special token alike.

    Use :meth:`from_file` or :meth:`from_vocab`.
    """

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        types = np.asarray(vocab.token_types, dtype=np.int32)  # int32 (n_vocab,)
        self._types = types.tolist()
        if vocab.model == "llama":
            pieces = sentencepiece_pieces(vocab)
            self._spm: SpmEncoder | None = SpmEncoder(vocab, pieces)
            self._bpe: BpeEncoder | None = None
            self._space_prefix = bool(vocab.add_space_prefix)
        elif vocab.model == "gpt2":
            pieces = [p.decode("utf-8", errors="replace") for p in vocab.pieces]
            self._spm = None
            self._bpe = BpeEncoder(pieces, list(vocab.merges), vocab.pre)
            self._space_prefix = False  # llama.cpp forces it off for BPE vocabularies
        else:
            raise ModelFormatError(f"tokenizer model {vocab.model!r} is not supported")
        self._pieces = pieces
        self._outputs = [self._piece_output(i, piece) for i, piece in enumerate(pieces)]
        self._special_texts = [p.encode("utf-8") for p in pieces]
        self._eot_id = vocab.eot_id if vocab.eot_id is not None else self._find_eot()
        self._eog = {i for i in (vocab.eos_id, self._eot_id) if i is not None}
        self._eog |= {
            i for i, p in enumerate(pieces) if p in _EOT_TEXTS and self._types[i] == TokenType.CONTROL
        }
        # Special tokens matched in text, longest first (llama.cpp's cache_special_tokens order).
        special_types = (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.USER_DEFINED)
        specials = [
            (p, i) for i, p in enumerate(pieces) if self._types[i] in special_types and p and p.strip(" ")
        ]
        specials.sort(key=lambda item: -len(item[0]))
        self._specials_all = specials
        self._specials_user = [(p, i) for p, i in specials if self._types[i] == TokenType.USER_DEFINED]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_vocab(cls, vocab: Vocab) -> Tokenizer:
        """Build the tokenizer of a :class:`~airoboros_ggml.vocab.Vocab`."""
        return cls(vocab)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Build the tokenizer of a GGML v3 or GGUF file (vocabulary-only GGUF files work too)."""
        from ..formats import read_vocab

        return cls(read_vocab(path))

    # ------------------------------------------------------------------ properties

    @property
    def n_vocab(self) -> int:
        """Number of tokens."""
        return len(self._pieces)

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id."""
        return self.vocab.bos_id

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence id."""
        return self.vocab.eos_id

    @property
    def eot_id(self) -> int | None:
        """End-of-turn id: the file's ``eot_token_id`` or a control token such as ``<|im_end|>``."""
        return self._eot_id

    @property
    def add_bos(self) -> bool:
        """Whether the file asks for BOS at the start of a tokenized prompt."""
        return bool(self.vocab.add_bos) and self.vocab.bos_id is not None

    @property
    def eog_ids(self) -> list[int]:
        """Ids that end generation (EOS, EOT, other end-of-turn control tokens), ascending."""
        return sorted(self._eog)

    def is_eog(self, token_id: int) -> bool:
        """Whether ``token_id`` ends generation: EOS, EOT, or another end-of-turn control token."""
        return token_id in self._eog

    def token_to_piece(self, token_id: int) -> str:
        """Return the vocabulary piece of a token as text (``▁Hello``, ``<0x0A>``, ``Ġworld``, ``<s>``)."""
        return self._pieces[token_id]

    def token_to_bytes(self, token_id: int, special: bool = False) -> bytes:
        """Return the bytes a token writes (control tokens write nothing unless ``special``)."""
        self._check_id(token_id)
        if special and self._types[token_id] in (TokenType.CONTROL, TokenType.UNKNOWN):
            return self._special_texts[token_id]
        return self._outputs[token_id]

    # ------------------------------------------------------------------ tokenize

    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text``.

        BOS rule: BOS is prepended exactly once, when ``add_bos`` is true, the file's ``add_bos`` setting
        is true (llama.cpp's default: true for Llama vocabularies, false for GPT-2 BPE unless the file says
        otherwise) and the tokens do not already start with BOS (``special=True`` on text starting with
        ``<s>``). With ``add_bos`` true and the file's ``add_eos`` set, EOS is appended (llama.cpp's
        ``add_special``).

        Args:
            text: the text.
            add_bos: allow the BOS (and EOS) the file asks for.
            special: parse control tokens written in the text (``<s>``, ``</s>``, ``<|im_start|>``) as
                single tokens; when false they are tokenized as plain text. User-defined tokens are always
                parsed, as in llama.cpp and Hugging Face tokenizers.

        Returns:
            The token ids.
        """
        ids = self._encode(text, self._specials_all if special else self._specials_user, exact=False)
        if add_bos and self.add_bos:
            bos = self.vocab.bos_id
            if not ids or ids[0] != bos:
                ids.insert(0, bos)
            if self.vocab.add_eos and self.vocab.eos_id is not None:
                ids.append(self.vocab.eos_id)
        return ids

    def encode_exact(self, text: str) -> list[int]:
        """Token ids whose bytes are exactly the UTF-8 of ``text``.

        Unlike :meth:`tokenize`: no BOS/EOS, and no SentencePiece dummy-prefix space, so the text can be a
        continuation (``"{"`` encodes as ``{``, not ``▁{``). Control tokens are not parsed; user-defined
        tokens are, as in :meth:`tokenize`. Grammar engines use this to tokenize forced text.
        """
        return self._encode(text, self._specials_user, exact=True)

    def _encode(self, text: str, specials: list[tuple[str, int]], exact: bool) -> list[int]:
        """Ids of the special tokens in ``specials`` found in ``text`` and of the text between them."""
        ids: list[int] = []
        for fragment in _split_special(text, specials):
            if isinstance(fragment, int):
                ids.append(fragment)
            elif self._spm is not None:
                ids.extend(self._spm.encode_exact(fragment) if exact else self._spm.encode(fragment))
            else:
                assert self._bpe is not None
                ids.extend(self._bpe.encode(fragment))
        return ids

    # ------------------------------------------------------------------ detokenize

    def detokenize(self, ids: Iterable[int], special: bool = False, at_start: bool = True) -> str:
        """Text of a token sequence: the pieces' bytes joined, then decoded as UTF-8 (errors replaced).

        With a dummy-prefix (Llama) vocabulary, the first text token at the start of the sequence and the
        first one after each special token lose one leading space -- the inverse of :meth:`tokenize`'s
        dummy prefix, so ``detokenize(tokenize(s)) == s``.

        Args:
            ids: token ids.
            special: write control tokens as their text (``<s>``, ``<|im_end|>``); otherwise they write
                nothing.
            at_start: ``ids`` begin a sequence; pass false when decoding a continuation (generated tokens
                after a prompt) to keep the space the model wrote before its first word.

        Returns:
            The text.
        """
        out = bytearray()
        strip = at_start
        for token_id in ids:
            data, strip = self._token_output(int(token_id), special, strip)
            out += data
        return out.decode("utf-8", errors="replace")

    def stream(self, special: bool = False, at_start: bool = True) -> StreamDetokenizer:
        """Return a :class:`StreamDetokenizer` (see :meth:`detokenize` for the arguments)."""
        return StreamDetokenizer(self, special=special, at_start=at_start)

    def _token_output(self, token_id: int, special: bool, strip: bool) -> tuple[bytes, bool]:
        """Bytes of one token in context, and whether the next token still loses its dummy space."""
        self._check_id(token_id)
        ttype = self._types[token_id]
        if ttype == TokenType.CONTROL:  # a special token: a new text fragment starts after it
            return (self._special_texts[token_id] if special else b""), self._space_prefix
        if ttype == TokenType.USER_DEFINED:
            return self._special_texts[token_id], self._space_prefix
        if ttype == TokenType.UNKNOWN and special:
            return self._special_texts[token_id], False
        data = self._outputs[token_id]
        if not data:
            return data, strip
        if strip and self._space_prefix and data[:1] == b" ":
            return data[1:], False
        return data, False

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < len(self._pieces):
            raise ValueError(f"token id {token_id} is out of range for a vocabulary of {len(self._pieces)}")

    def _piece_output(self, token_id: int, piece: str) -> bytes:
        ttype = self._types[token_id]
        if ttype == TokenType.CONTROL:
            return b""
        if ttype == TokenType.UNKNOWN:
            return _UNKNOWN_OUTPUT if self._spm is not None else b""
        if ttype == TokenType.USER_DEFINED:
            return piece.encode("utf-8")
        if self._spm is not None:
            if ttype == TokenType.BYTE and len(piece) == 6 and piece[:3] == "<0x" and piece[5] == ">":
                return bytes([int(piece[3:5], 16)])
            return piece.replace(SPACE_SYMBOL, " ").encode("utf-8")
        return decode_byte_level(piece)

    def _find_eot(self) -> int | None:
        index = {p: i for i, p in enumerate(self._pieces) if self._types[i] == TokenType.CONTROL}
        for text in _EOT_TEXTS:
            if text in index:
                return index[text]
        return None

    def __repr__(self) -> str:
        return f"Tokenizer(model={self.vocab.model!r}, n_vocab={self.n_vocab}, pre={self.vocab.pre!r})"


def _split_special(text: str, specials: list[tuple[str, int]]) -> list[str | int]:
    """Split ``text`` on special-token texts (tried longest first, as llama.cpp does) into text and ids."""
    fragments: list[str | int] = [text] if text else []
    for piece, token_id in specials:
        if not any(isinstance(f, str) and piece in f for f in fragments):
            continue
        out: list[str | int] = []
        for fragment in fragments:
            if isinstance(fragment, int) or piece not in fragment:
                out.append(fragment)
                continue
            parts = fragment.split(piece)
            for k, part in enumerate(parts):
                if k:
                    out.append(token_id)
                if part:
                    out.append(part)
        fragments = out
    return fragments
