r"""Pre-tokenizers of byte-level BPE vocabularies, written for the standard library's :mod:`re`.

The Hugging Face pre-tokenizers (and llama.cpp's copies of them) are regular expressions using the
Unicode property classes ``\p{L}`` (letters), ``\p{N}`` (numbers) and ``\p{P}`` (punctuation), which
:mod:`re` lacks. They are rebuilt here as explicit character classes derived from :mod:`unicodedata`,
and ``\s`` is replaced by the Unicode ``White_Space`` set (what Oniguruma and llama.cpp use; Python's own
``\s`` also matches U+001C..U+001F).

A pre-tokenizer is a cascade of expressions, applied as llama.cpp's ``unicode_regex_split`` does: each
expression splits every chunk produced by the previous one into its matches *and* the text between them.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path

from ..errors import ModelFormatError

# Unicode White_Space property (the code points ``\s`` matches in Oniguruma / the `regex` module).
_WHITESPACE_RANGES = (
    (0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
    (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)


def _ranges_to_class_body(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    """Character-class body (without brackets) for inclusive code point ranges."""
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(re.escape(chr(lo)) if lo < 0x80 else f"\\U{lo:08x}")
        else:
            parts.append(f"\\U{lo:08x}-\\U{hi:08x}")
    return "".join(parts)


UNICODE_TABLE = Path(__file__).with_name("unicode_classes.json")
"""Stored :func:`category_ranges` of one Unicode version (scanning all 1.1M code points takes ~0.2 s of every
start); used when :mod:`unicodedata` has that version, else the scan runs. ``scripts/make_unicode_classes.py``
writes it; a test checks it against the scan."""


def category_ranges() -> dict[str, list[tuple[int, int]]]:
    """Inclusive code point ranges of the general category major classes ``L``, ``N`` and ``P`` (a full scan)."""
    ranges: dict[str, list[tuple[int, int]]] = {"L": [], "N": [], "P": []}
    category = unicodedata.category
    current, start = "", 0
    for cp in range(0x110001):
        major = category(chr(cp))[0] if cp < 0x110000 else ""
        if major != current:
            if current in ranges:
                ranges[current].append((start, cp - 1))
            current, start = major, cp
    return ranges


def _stored_ranges() -> dict[str, list[tuple[int, int]]] | None:
    """The ranges of :data:`UNICODE_TABLE` when it matches this Python's Unicode version, else None."""
    try:
        table = json.loads(UNICODE_TABLE.read_text())
    except (OSError, ValueError):
        return None
    if table.get("unidata_version") != unicodedata.unidata_version:
        return None
    return {key: [(lo, hi) for lo, hi in table[key]] for key in ("L", "N", "P")}


@functools.cache
def _category_classes() -> dict[str, str]:
    """Class bodies for ``L``, ``N`` and ``P`` (general category major classes) and ``s``."""
    ranges = _stored_ranges() or category_ranges()
    bodies = {key: _ranges_to_class_body(value) for key, value in ranges.items()}
    bodies["s"] = _ranges_to_class_body(_WHITESPACE_RANGES)
    return bodies


def translate_pattern(pattern: str) -> str:
    r"""Rewrite an Oniguruma-style pattern for :mod:`re`.

    ``\p{L}``, ``\p{N}``, ``\p{P}``, ``\s`` and ``\S`` become explicit classes, inside or outside
    brackets (``[^\s\p{L}\p{N}]`` works). Other syntax is passed through unchanged.

    Args:
        pattern: the expression as llama.cpp / tokenizer.json writes it.

    Returns:
        An equivalent expression for :mod:`re`.
    """
    bodies = _category_classes()
    out = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "p" and pattern.startswith("{", i + 2):
                end = pattern.index("}", i)
                name = pattern[i + 3 : end]
                if name not in bodies:
                    raise ValueError(f"unsupported Unicode class \\p{{{name}}} in {pattern!r}")
                out.append(bodies[name] if in_class else f"[{bodies[name]}]")
                i = end + 1
                continue
            if nxt == "s":
                out.append(bodies["s"] if in_class else f"[{bodies['s']}]")
                i += 2
                continue
            if nxt == "S":
                if in_class:
                    raise ValueError(f"\\S inside a character class is not supported: {pattern!r}")
                out.append(f"[^{bodies['s']}]")
                i += 2
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            i += 1
            continue
        if c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")

PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "default": _DEFAULT,
    "gpt2": (_GPT2,),
    "gpt-2": (_GPT2,),
    "phi-2": (_GPT2,),
    "mpt": (_GPT2,),
    "olmo": (_GPT2,),
    "jais": (_GPT2,),
    "starcoder": (r"\p{N}", _GPT2),
    "smollm": (r"\p{N}", _GPT2),
    "refact": (r"\p{N}", _GPT2),
    "command-r": (r"\p{N}", _GPT2),
    "codeshell": (r"\p{N}", _GPT2),
    "exaone": (r"\p{N}", _GPT2),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"),
    "llama3": (_LLAMA3,),
    "llama-bpe": (_LLAMA3,),
    "llama-v3": (_LLAMA3,),
    "dbrx": (_LLAMA3,),
    "smaug-bpe": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "stablelm2": (_QWEN2,),
}
"""Pre-tokenizer expression cascades by ``tokenizer.ggml.pre`` name (as in llama.cpp's llama-vocab.cpp)."""

IGNORE_MERGES = frozenset({"llama3", "llama-bpe", "llama-v3"})
"""Pre-tokenizers whose words are looked up whole in the vocabulary before merging (llama.cpp's rule)."""


class PreTokenizer:
    """Splits text into the words that byte-level BPE merges independently.

    Args:
        name: ``tokenizer.ggml.pre`` (``None`` or empty selects ``"default"``, as llama.cpp does).
    """

    def __init__(self, name: str | None) -> None:
        self.name = name or "default"
        if self.name not in PRE_TOKENIZERS:
            raise ModelFormatError(
                f"BPE pre-tokenizer {self.name!r} is not supported "
                f"(known: {', '.join(sorted(PRE_TOKENIZERS))})"
            )
        # One capturing group around each expression: re.split then returns matches and gaps in order.
        self._patterns = [re.compile(f"({translate_pattern(p)})") for p in PRE_TOKENIZERS[self.name]]

    def split(self, text: str) -> list[str]:
        """Split ``text`` into pre-tokenized words (their concatenation is ``text``)."""
        chunks = [text] if text else []
        for pattern in self._patterns:
            split = pattern.split
            if len(chunks) == 1:
                chunks = [c for c in split(chunks[0]) if c]
            else:
                chunks = [c for chunk in chunks for c in split(chunk) if c]
        return chunks
