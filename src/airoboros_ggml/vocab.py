"""A model file's vocabulary, exactly as stored (the tokenizers interpret it)."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np


class TokenType(enum.IntEnum):
    """Token types as GGUF stores them (``tokenizer.ggml.token_type``)."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


@dataclasses.dataclass
class Vocab:
    r"""Pieces, scores and token types of a model file, plus the tokenizer settings it declares.

    ``pieces`` are the bytes the file stores. For GGML v3 files that is the 2023 converter's encoding
    (``piece_encoding == "ggml-v3"``: U+2581 written as a plain space, byte pieces as the raw byte, control
    pieces empty, the unknown piece as ``" \\u2047 "``); for GGUF it is the UTF-8 of the original piece
    (``piece_encoding == "gguf"``).
    """

    pieces: list[bytes]
    """Token pieces as stored, indexed by token id."""
    scores: np.ndarray
    """float32 (n_vocab,): SentencePiece scores (zeros when the file has none)."""
    token_types: np.ndarray
    """int32 (n_vocab,): :class:`TokenType` values (derived from the converter's conventions for GGML v3)."""
    model: str = "llama"
    """Tokenizer kind: ``"llama"`` (SentencePiece) or ``"gpt2"`` (byte-level BPE)."""
    piece_encoding: str = "gguf"
    """How ``pieces`` are encoded: ``"ggml-v3"`` or ``"gguf"``."""
    pre: str | None = None
    """Byte-level BPE pre-tokenizer name (``tokenizer.ggml.pre``)."""
    merges: list[str] = dataclasses.field(default_factory=list)
    """Byte-level BPE merges, ``"a b"`` strings in rank order."""
    bos_id: int | None = 1
    """Beginning-of-sequence token id."""
    eos_id: int | None = 2
    """End-of-sequence token id."""
    unk_id: int | None = 0
    """Unknown token id."""
    pad_id: int | None = None
    """Padding token id."""
    add_bos: bool = True
    """Whether tokenization starts with BOS."""
    add_eos: bool = False
    """Whether tokenization ends with EOS."""
    add_space_prefix: bool = True
    """SentencePiece dummy-prefix space."""
    chat_template: str | None = None
    """The file's Jinja chat template (``tokenizer.chat_template``), if any."""
    eot_id: int | None = None
    """End-of-turn token id (``tokenizer.ggml.eot_token_id``), if declared."""

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def n_vocab(self) -> int:
        """Number of tokens."""
        return len(self.pieces)


GGML_V3_UNKNOWN_PIECE = " \u2047 ".encode()
"""How the 2023 GGML converter wrote SentencePiece's unknown piece."""
SPM_SPACE = "\u2581".encode()
"""SentencePiece's whitespace marker, U+2581."""


def gguf_piece_to_ggml_v3(piece: bytes, token_type: int) -> bytes:
    """Encode one SentencePiece piece as the 2023 GGML converter did (docs/formats.md, "Vocabulary encoding")."""
    if token_type == TokenType.UNKNOWN:
        return GGML_V3_UNKNOWN_PIECE
    if token_type == TokenType.CONTROL:
        return b""
    if token_type == TokenType.BYTE and piece.startswith(b"<0x") and piece.endswith(b">"):
        return bytes([int(piece[3:-1], 16)])
    return piece.replace(SPM_SPACE, b" ")


def ggml_v3_piece_to_gguf(token_id: int, piece: bytes, token_type: int) -> bytes:
    """Undo :func:`gguf_piece_to_ggml_v3` (control pieces get Llama's ``<unk>``/``<s>``/``</s>`` names)."""
    if token_type == TokenType.UNKNOWN:
        return b"<unk>"
    if token_type == TokenType.CONTROL:
        return {1: b"<s>", 2: b"</s>"}.get(token_id, b"<ctrl%d>" % token_id)
    if token_type == TokenType.BYTE and len(piece) == 1:
        return b"<0x%02X>" % piece[0]
    return piece.replace(b" ", SPM_SPACE)


def to_piece_encoding(vocab: Vocab, encoding: str) -> list[bytes]:
    """The vocabulary's pieces in ``encoding`` (``"ggml-v3"`` or ``"gguf"``), converting if needed."""
    if vocab.piece_encoding == encoding:
        return list(vocab.pieces)
    if vocab.model != "llama":
        raise ValueError(f"only SentencePiece ('llama') vocabularies can be stored as {encoding}")
    types = vocab.token_types
    if encoding == "ggml-v3":
        return [gguf_piece_to_ggml_v3(p, int(t)) for p, t in zip(vocab.pieces, types)]
    if encoding == "gguf":
        return [ggml_v3_piece_to_gguf(i, p, int(t)) for i, (p, t) in enumerate(zip(vocab.pieces, types))]
    raise ValueError(f"unknown piece encoding {encoding!r}")
