"""HTTP downloads into a folder: urllib with a timeout, a size cap, a temporary file."""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from lecun1989.data.checks import one_line
from lecun1989.errors import DataError

MAX_BYTES = 64 * 2**20
_CHUNK = 2**16


def fetch(url: str, folder: Path, timeout: float) -> Path:
    """Download url into a new temporary file in folder and return its path (the caller renames)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".download.", suffix=".part")
    tmp = Path(name)
    try:
        with open(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "lecun1989"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                _copy(response, out, url)
        return tmp
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError):
            raise DataError(one_line(f"{url}: HTTP {e.code} {e.reason}")) from None
        if isinstance(e, urllib.error.URLError):
            raise DataError(one_line(f"{url}: {e.reason}")) from None
        if isinstance(e, OSError | HTTPException | ValueError):
            raise DataError(one_line(f"{url}: {type(e).__name__}: {e}")) from None
        raise


def _copy(response, out, url: str) -> None:
    """Copy a response to a file, refusing more than MAX_BYTES or less than its Content-Length."""
    total = 0
    while chunk := response.read(_CHUNK):
        total += len(chunk)
        if total > MAX_BYTES:
            raise DataError(f"{url}: more than {MAX_BYTES >> 20} MiB, not the expected file")
        out.write(chunk)
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and total != int(length):
        raise DataError(f"{url}: the download stopped after {total} of {length} bytes")
