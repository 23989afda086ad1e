"""SentencePiece for Llama vocabularies: a ``ModelProto`` rebuilt from the file, run by ``sentencepiece``.

The model is serialized by a minimal protobuf writer (``google.protobuf`` is not a dependency). Field
numbers are those of ``sentencepiece_model.proto``:

- ``ModelProto``: ``pieces = 1`` (repeated ``SentencePiece``), ``trainer_spec = 2``, ``normalizer_spec = 3``.
- ``SentencePiece``: ``piece = 1`` (string), ``score = 2`` (float), ``type = 3`` (enum, same values as
  :class:`~airoboros_ggml.vocab.TokenType`).
- ``TrainerSpec``: ``model_type = 3`` (``BPE = 2``), ``vocab_size = 4``, ``byte_fallback = 35``,
  ``unk_id = 40``, ``bos_id = 41``, ``eos_id = 42``, ``pad_id = 43``.
- ``NormalizerSpec``: ``name = 1``, ``add_dummy_prefix = 3``, ``remove_extra_whitespaces = 4``,
  ``escape_whitespaces = 5``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelFormatError
from ..vocab import TokenType, Vocab, to_piece_encoding

if TYPE_CHECKING:
    import sentencepiece

SPACE_SYMBOL = "\u2581"
"""SentencePiece's escaped space (``▁``)."""

_BPE = 2


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # two's complement, as protobuf writes negative int32
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int_field(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(int(value))


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _float_field(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def build_model_proto(
    pieces: list[str],
    scores: np.ndarray,
    types: np.ndarray,
    *,
    add_dummy_prefix: bool,
    unk_id: int,
    bos_id: int | None,
    eos_id: int | None,
    pad_id: int | None,
) -> bytes:
    """Serialize a SentencePiece BPE ``ModelProto``.

    Args:
        pieces: SentencePiece pieces (``▁`` for spaces, ``<0xNN>`` for byte pieces), indexed by id; unique
            and non-empty.
        scores: float32 (n_vocab,): piece scores.
        types: int32 (n_vocab,): :class:`TokenType` values.
        add_dummy_prefix: whether the normalizer prepends ``▁``.
        unk_id: id of the unknown piece.
        bos_id: id of BOS, if any.
        eos_id: id of EOS, if any.
        pad_id: id of padding, if any.

    Returns:
        The serialized model, loadable with ``SentencePieceProcessor(model_proto=...)``.
    """
    out = bytearray()
    for piece, score, ttype in zip(pieces, scores.tolist(), types.tolist()):
        body = _bytes_field(1, piece.encode("utf-8")) + _float_field(2, score) + _int_field(3, ttype)
        out += _bytes_field(1, body)
    trainer = _int_field(3, _BPE) + _int_field(4, len(pieces)) + _int_field(35, 1) + _int_field(40, unk_id)
    trainer += _int_field(41, -1 if bos_id is None else bos_id)
    trainer += _int_field(42, -1 if eos_id is None else eos_id)
    trainer += _int_field(43, -1 if pad_id is None else pad_id)
    out += _bytes_field(2, trainer)
    normalizer = (
        _bytes_field(1, b"identity")
        + _int_field(3, int(add_dummy_prefix))
        + _int_field(4, 0)
        + _int_field(5, 1)
    )
    out += _bytes_field(3, normalizer)
    return bytes(out)


def sentencepiece_pieces(vocab: Vocab) -> list[str]:
    """Return the vocabulary's pieces as SentencePiece writes them (``▁`` spaces, ``<0xNN>`` bytes).

    GGUF pieces are already in that form. GGML v3 pieces are mapped back from the 2023 converter's
    encoding: plain spaces become ``▁``, single raw bytes of BYTE tokens become ``<0xNN>``, the empty
    control pieces of ids 1 and 2 become ``<s>`` and ``</s>``, and the unknown piece becomes ``<unk>``.
    """
    return [p.decode("utf-8", errors="replace") for p in to_piece_encoding(vocab, "gguf")]


class SpmEncoder:
    """Encodes plain text (no special tokens) with ``sentencepiece`` running a model of the vocabulary.

    Control pieces are never matched in text by SentencePiece; duplicated or empty pieces (which
    SentencePiece refuses) are replaced in the model by unmatchable control placeholders, so ids keep
    their positions.

    Args:
        vocab: a ``model == "llama"`` vocabulary.
        pieces: its SentencePiece pieces (:func:`sentencepiece_pieces`).
    """

    def __init__(self, vocab: Vocab, pieces: list[str]) -> None:
        types = vocab.token_types.astype(np.int32).copy()  # int32 (n_vocab,)
        model_pieces = list(pieces)
        seen: set[str] = set()
        for i, piece in enumerate(model_pieces):
            if not piece or piece in seen:
                model_pieces[i] = f"<airoboros-ggml-placeholder-{i}>"
                types[i] = TokenType.CONTROL
            seen.add(model_pieces[i])
        unk = np.nonzero(types == TokenType.UNKNOWN)[0]  # int64 (n_unknown,)
        if len(unk) != 1:
            raise ModelFormatError(
                f"a SentencePiece vocabulary needs exactly one UNKNOWN token, this one has {len(unk)}"
            )
        self._model_args = (model_pieces, vocab.scores.astype(np.float32), types)
        self._ids = dict(unk_id=int(unk[0]), bos_id=vocab.bos_id, eos_id=vocab.eos_id, pad_id=vocab.pad_id)
        self.add_dummy_prefix = bool(vocab.add_space_prefix)
        self.proto = build_model_proto(*self._model_args, add_dummy_prefix=self.add_dummy_prefix, **self._ids)
        self.processor = _load_processor(self.proto)
        self._exact: sentencepiece.SentencePieceProcessor | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (dummy prefix per the vocabulary; no BOS/EOS; no special tokens)."""
        if not text:
            return []
        return self.processor.EncodeAsIds(text)

    def encode_exact(self, text: str) -> list[int]:
        """Token ids whose pieces spell exactly ``text``: never a dummy-prefix space (no BOS/EOS either)."""
        if not text:
            return []
        if not self.add_dummy_prefix:
            return self.processor.EncodeAsIds(text)
        if self._exact is None:  # built on first use (grammar-constrained generation needs it)
            self._exact = _load_processor(build_model_proto(*self._model_args, add_dummy_prefix=False, **self._ids))
        return self._exact.EncodeAsIds(text)


def _load_processor(proto: bytes) -> sentencepiece.SentencePieceProcessor:
    import sentencepiece  # here, not at the top: importing the package (and its kernels) must not need it

    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError) as exc:
        raise ModelFormatError(f"cannot build a SentencePiece model of the vocabulary: {exc}") from exc
    return processor
