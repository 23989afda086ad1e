"""Tokenizers: SentencePiece for Llama vocabularies, byte-level BPE for GGUF ``gpt2`` vocabularies."""

from .core import Tokenizer
from .stream import StreamDetokenizer

__all__ = ["StreamDetokenizer", "Tokenizer"]
