"""Reading data files: one-line DataErrors for missing, unreadable, empty or damaged files."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path

from lecun1989.data.checks import one_line
from lecun1989.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"


def read_bytes(path: Path, fix: str) -> bytes:
    """The bytes of a file, or a DataError saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
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
    kind, unpack = "gzip", gzip.decompress
    if raw.startswith(BZ2_MAGIC):
        kind, unpack = "bzip2", bz2.decompress
    elif not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return unpack(raw)
    except (EOFError, OSError, ValueError, zlib.error) as e:
        problem = f"damaged or truncated {kind} data ({e})"
        raise DataError(one_line(f"{name}: {problem}; {fix}")) from None


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file through a temporary file in the same folder and a rename: never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
