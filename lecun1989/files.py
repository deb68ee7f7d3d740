"""Writing files so that nothing is ever half-written, and every write failure is one line.

`write_bytes` / `write_text` / `write_json` write a temporary file in the same folder, flush
it to disk (fsync) and rename it over the target: a kill at any moment leaves the old complete
file or the new one. `append_jsonl` / `extend_jsonl` add JSON lines and flush them,
`write_jsonl` replaces such a file; `read_jsonl` reads one back and drops a torn last line (a
kill mid-append). Every write goes through `safe_write`, which turns the OSErrors a user can
fix (a full disk, a name too long, no permission, a read-only file system) into a one-line
UserError and leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lecun1989.errors import UserError

_TMP_SUFFIX = ".tmp"
_counter = itertools.count()  # temporary names unique within a process (threads, nested writes)


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file this module writes (left only by a SIGKILL)."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def write_error(e: OSError, path: str | os.PathLike, resume: str | None = None) -> UserError:
    """The one-line UserError for an OSError met writing `path`; `resume`: how to go on."""
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        then = f"resume with `{resume}`" if resume else "run the command again"
        return UserError(f"the disk is full writing {path}; free space and {then}")
    if code == errno.ENAMETOOLONG:
        return UserError(f"the name {path} is longer than the file system allows; choose a "
                         "shorter --out")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "read-only file system" if code == errno.EROFS else "permission"
        return UserError(f"cannot write to {path} ({why}); choose another folder with --out")
    return UserError(f"cannot write {path} ({e.strerror or e}); choose another folder with --out")


@contextmanager
def safe_write(path: str | os.PathLike, resume: str | None = None) -> Iterator[None]:
    """Turn an OSError raised inside into `write_error`'s one-line UserError."""
    try:
        yield
    except OSError as e:
        raise write_error(e, path, resume) from None


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """`write_bytes` raising the OSError itself, for callers with their own message."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_counter)}{_TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: never leave the temporary file
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes, *, resume: str | None = None) -> None:
    """Write a file atomically and durably: a temporary file, fsync, a rename, fsync the folder.

    A failure is `write_error`'s one-line UserError; `resume` says how to go on after it.
    """
    with safe_write(path, resume):
        write_atomic(path, data)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the rename itself is still atomic
    finally:
        os.close(fd)


def make_folder(path: str | os.PathLike) -> Path:
    """mkdir -p, with `write_error`'s one line when it cannot be made."""
    path = Path(path)
    with safe_write(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_figure(fig, path: str | os.PathLike, **savefig) -> Path:
    """A matplotlib figure (or a PIL image: `save` taking a file object) written atomically,
    its folder made, a failure in one line."""
    import io

    buffer = io.BytesIO()
    if hasattr(fig, "savefig"):
        fig.savefig(buffer, **{"format": Path(path).suffix[1:] or "png", **savefig})
    else:
        fig.save(buffer, **savefig)
    make_folder(Path(path).parent)
    write_bytes(path, buffer.getvalue())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, resume: str | None = None) -> None:
    """Write text (UTF-8) atomically."""
    write_bytes(path, text.encode(), resume=resume)


def _jsonable(obj):
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj, *, resume: str | None = None) -> None:
    """Write JSON (indented, numpy values as lists) atomically."""
    write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n", resume=resume)


def append_jsonl(path: str | os.PathLike, obj, *, resume: str | None = None) -> None:
    """Append one JSON line and flush it to disk (a kill mid-line leaves a torn last line)."""
    extend_jsonl(path, [obj], resume=resume)


def extend_jsonl(path: str | os.PathLike, records, *, resume: str | None = None) -> None:
    """Append JSON lines, one write and one flush to disk for them all."""
    text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
    if text:
        append_bytes(path, text.encode(), resume=resume)  # (json.dumps writes ASCII)


def append_bytes(path: str | os.PathLike, data: bytes, *, resume: str | None = None) -> None:
    """Append bytes and flush them to disk (a kill mid-append leaves a torn tail, which the
    reader of such a file drops)."""
    with safe_write(path, resume), open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike, records, *, resume: str | None = None) -> None:
    """Replace a JSON-lines file atomically."""
    write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in records),
               resume=resume)


def read_jsonl(path: str | os.PathLike, limit: int | None = None) -> list:
    """The records of a JSON-lines file (the first `limit` of them); a torn last line (a kill
    mid-append) is dropped. A damaged line before the last is a UserError naming it.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    records = []
    for i, line in enumerate(lines[:limit]):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn by a kill while it was written
            raise UserError(f"{path} line {i + 1}: not valid JSON; the file is damaged") from None
    return records
