"""Writing an output file all or nothing: a temporary name in the target directory, renamed when complete.

An interrupted run (Ctrl-C, an error, a full disk) removes the temporary file, so no half-written model is
ever left under the name the user asked for.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputFileError

log = logging.getLogger(__name__)

_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextlib.contextmanager
def atomic_output(dst: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it to ``dst`` when the block completes.

    Args:
        dst: The file to create.
        overwrite: Replace an existing ``dst`` (otherwise it is an error).

    Raises:
        OutputFileError: ``dst`` exists (without ``overwrite``), its directory is missing or read-only, or
            the disk filled up while writing. The temporary file is gone in every failure case, including
            ``KeyboardInterrupt``.
    """
    dst = Path(dst)
    directory = dst.parent if str(dst.parent) else Path(".")
    if dst.exists() and not overwrite:
        raise OutputFileError(errno.EEXIST, f"{dst}: the output file already exists")
    if dst.is_dir():
        raise OutputFileError(errno.EISDIR, f"{dst}: the output is a directory, not a file name")
    tmp = directory / f".{dst.name}.{secrets.token_hex(4)}.part"
    try:
        open(tmp, "xb").close()  # created with the usual permissions (umask), unlike mkstemp's 0600
    except OSError as e:
        raise _output_error(dst, e) from e
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, OutputFileError) and e.errno is not None:
            raise _output_error(dst, e) from e
        raise
    log.debug("wrote %s", dst)


def _output_error(dst: Path, e: OSError) -> OutputFileError:
    if e.errno in _NO_ROOM:
        what = "there is no room left on the device (or the file size limit was reached)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = f"the directory {dst.parent or '.'} is not writable"
    elif e.errno == errno.ENOENT:
        what = f"the directory {dst.parent or '.'} does not exist"
    else:
        what = e.strerror or str(e)
    return OutputFileError(e.errno, f"{dst}: cannot write the output file: {what}; nothing was written")


class CountingSink:
    """A binary stream that only counts what is written to it (for predicting a file's size)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        """Count ``data``'s bytes."""
        n = memoryview(data).nbytes
        self.size += n
        return n

    def tell(self) -> int:
        """Bytes written so far."""
        return self.size
