"""Byte-level BPE (GGUF ``tokenizer.ggml.model == "gpt2"``): GPT-2 byte mapping, merges by rank."""

from __future__ import annotations

import functools
import heapq

from .pretokenize import IGNORE_MERGES, PreTokenizer

_CACHE_LIMIT = 200_000
_LONG_WORD = 48  # words with more symbols than this are merged with a heap (O(n log n), not O(n^2))


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character mapping (``Ġ`` is the space byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """Inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


@functools.cache
def _to_latin1() -> dict[int, str]:
    """``str.translate`` table of byte-level characters to the latin-1 characters of their bytes.

    Every other character below U+0100 maps to U+FFFF, which latin-1 cannot encode (such pieces take the
    slow path).
    """
    table = {cp: "\uffff" for cp in range(256)}
    table.update({ord(c): chr(b) for c, b in unicode_to_bytes().items()})
    return table


def decode_byte_level(piece: str) -> bytes:
    """Bytes a byte-level piece stands for (characters outside the mapping are kept as UTF-8)."""
    try:  # every character mapped: one translate + encode (vocabularies hold ~50-150k pieces)
        return piece.translate(_to_latin1()).encode("latin-1")
    except UnicodeEncodeError:
        pass
    table = unicode_to_bytes()
    out = bytearray()
    for c in piece:
        b = table.get(c)
        if b is None:
            out += c.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


class BpeEncoder:
    """Encodes plain text (no special tokens) with byte-level BPE.

    Args:
        pieces: the vocabulary's pieces as text (byte-level encoded), indexed by token id.
        merges: ``"a b"`` merge rules in rank order.
        pre: ``tokenizer.ggml.pre`` name.
    """

    def __init__(self, pieces: list[str], merges: list[str], pre: str | None) -> None:
        self.pre_tokenizer = PreTokenizer(pre)
        self.ignore_merges = self.pre_tokenizer.name in IGNORE_MERGES
        self.token_to_id: dict[str, int] = {}
        for i, piece in enumerate(pieces):
            self.token_to_id.setdefault(piece, i)
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            left, sep, right = merge.partition(" ")
            if not sep:  # a merge "a b" whose halves contain spaces cannot exist; skip malformed entries
                continue
            self.ranks.setdefault((left, right), rank)
        # Byte-level mapping as a str.translate table over the latin-1 view of the UTF-8 bytes.
        self._translate = {b: c for b, c in bytes_to_unicode().items()}
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS, no special-token parsing)."""
        out: list[int] = []
        cache = self._cache
        for word in self.pre_tokenizer.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._encode_word(word)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)
        return out

    def _encode_word(self, word: str) -> list[int]:
        mapped = word.encode("utf-8").decode("latin-1").translate(self._translate)
        token_to_id = self.token_to_id
        if self.ignore_merges and mapped in token_to_id:
            return [token_to_id[mapped]]
        ids: list[int] = []
        for symbol in self.merge(mapped):
            tid = token_to_id.get(symbol)
            if tid is not None:
                ids.append(tid)
            else:  # llama.cpp: fall back to single byte-characters, dropping those the vocab lacks
                ids.extend(token_to_id[c] for c in symbol if c in token_to_id)
        return ids

    def merge(self, mapped: str) -> list[str]:
        """Apply the merges to one byte-level word, lowest rank first (leftmost on ties)."""
        if len(mapped) > _LONG_WORD:
            return self.merge_heap(mapped)
        return self.merge_simple(mapped)

    def merge_simple(self, mapped: str) -> list[str]:
        """GPT-2's loop: merge every occurrence of the best-ranked pair, repeat (fast for short words)."""
        symbols = list(mapped)
        ranks = self.ranks
        inf = len(ranks) + 1
        while len(symbols) > 1:
            best, best_rank = None, inf
            for pair in zip(symbols, symbols[1:]):
                r = ranks.get(pair, inf)
                if r < best_rank:
                    best, best_rank = pair, r
            if best is None:
                break
            left, right = best
            merged = left + right
            out: list[str] = []
            i, n = 0, len(symbols)
            while i < n:
                if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            symbols = out
        return symbols

    def merge_heap(self, mapped: str) -> list[str]:
        """Same result as :meth:`merge`, with llama.cpp's priority queue of (rank, left position)."""
        symbols: list[str | None] = list(mapped)
        n = len(symbols)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        ranks = self.ranks
        heap = []
        for i in range(n - 1):
            r = ranks.get((symbols[i], symbols[i + 1]))
            if r is not None:
                heap.append((r, i, symbols[i], symbols[i + 1]))
        heapq.heapify(heap)
        while heap:
            _, i, left, right = heapq.heappop(heap)
            j = nxt[i]
            if j < 0 or symbols[i] != left or symbols[j] != right:
                continue  # outdated pair
            merged = left + right
            symbols[i], symbols[j] = merged, None
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prev[nxt[j]] = i
            p, q = prev[i], nxt[i]
            if p >= 0 and (r := ranks.get((symbols[p], merged))) is not None:
                heapq.heappush(heap, (r, p, symbols[p], merged))
            if q >= 0 and (r := ranks.get((merged, symbols[q]))) is not None:
                heapq.heappush(heap, (r, i, merged, symbols[q]))
        return [s for s in symbols if s is not None]
