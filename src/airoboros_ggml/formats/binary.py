"""Bounds-checked little-endian reading of a memory-mapped file.

Every read checks the remaining length first, so a truncated or corrupted file raises
:class:`~airoboros_ggml.errors.ModelFormatError` naming the file and offset instead of a ``struct.error``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")


class Cursor:
    """A read position in a byte buffer that raises :class:`ModelFormatError` on overrun."""

    def __init__(self, buf: memoryview | bytes, path: Path, what: str, pos: int = 0):
        self.buf = buf
        self.size = len(buf)
        self.path = path
        self.what = what
        self.pos = pos

    def fail(self, message: str) -> ModelFormatError:
        """Build an error naming the file, its kind and the current offset."""
        return ModelFormatError(f"{self.path}: {self.what} is damaged at byte {self.pos}: {message}")

    def need(self, n: int, what: str) -> None:
        """Raise unless ``n`` more bytes are available."""
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"{what} needs {n} bytes but only {max(0, self.size - self.pos)} remain "
                f"(file is {self.size} bytes; truncated download?)"
            )

    def _unpack(self, st: struct.Struct, what: str) -> int | float:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self, what: str = "u32") -> int:
        """Read an unsigned 32-bit integer."""
        return int(self._unpack(_U32, what))

    def i32(self, what: str = "i32") -> int:
        """Read a signed 32-bit integer."""
        return int(self._unpack(_I32, what))

    def u64(self, what: str = "u64") -> int:
        """Read an unsigned 64-bit integer."""
        return int(self._unpack(_U64, what))

    def f32(self, what: str = "f32") -> float:
        """Read a 32-bit float."""
        return float(self._unpack(_F32, what))

    def raw(self, n: int, what: str) -> bytes:
        """Read ``n`` bytes."""
        self.need(n, what)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def strings(self, count: int, what: str) -> list[bytes]:
        """Read ``count`` strings, each a u64 length then that many bytes (a GGUF string array).

        One tight loop (vocabularies hold ~50-150k strings; a method call per string costs ~0.3 s).
        """
        buf, pos, size = self.buf, self.pos, self.size
        unpack = _U64.unpack_from
        out: list[bytes] = []
        append = out.append
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"{what} length")
            (n,) = unpack(buf, pos)
            pos += 8
            end = pos + n
            if end > size:
                self.pos = pos
                self.need(n, what)
            append(bytes(buf[pos:end]))
            pos = end
        self.pos = pos
        return out

    def array(self, dtype: np.dtype | str, count: int, what: str) -> np.ndarray:
        """Read ``count`` little-endian numbers as a (copied) numpy array."""
        dt = np.dtype(dtype).newbyteorder("<")
        self.need(count * dt.itemsize, what)
        out = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).astype(dt.newbyteorder("="))
        self.pos += count * dt.itemsize
        return out

    def align(self, alignment: int) -> None:
        """Move forward to the next multiple of ``alignment`` (absolute file offset)."""
        self.pos += (-self.pos) % alignment
