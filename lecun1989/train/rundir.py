"""The run directory: config.json, metrics.jsonl, summary.json, model.safetensors.

Every file is written atomically (a temporary file, then a rename), so a run killed at
any moment leaves only complete files behind. A run holds `.lock` (fcntl.flock) while it
writes: a second run on the same folder is refused, and a lock left by a dead process is
free again (the kernel drops flocks with their process).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from lecun1989.errors import CheckpointError, UserError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.json", "metrics.jsonl", "summary.json", \
    "model.safetensors"
LOCK = ".lock"
_HELD: dict[Path, int] = {}  # run folder -> file descriptor of the lock this process holds


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically and durably: a temporary file, fsync, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically."""
    write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def append_jsonl(path: Path, obj) -> None:
    """Append one JSON line and flush it to disk."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())


def keep_jsonl(path: Path, keep: int) -> list[dict]:
    """The first `keep` records of a JSON-lines file, rewritten to hold only those (resume)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    try:
        records = [json.loads(line) for line in lines[:keep]]
    except json.JSONDecodeError:
        records = []
    if len(records) < keep:
        raise CheckpointError(f"{path}: holds {len(records)} complete records, the checkpoint "
                              f"{keep}; the run folder is damaged: start the run again")
    if len(lines) > keep:  # written after the checkpoint (or torn by a kill): drop them
        write_bytes(path, "".join(line + "\n" for line in lines[:keep]).encode())
    return records


def default_out(preset: str, data: str, seed: int | str, root: str = "runs") -> Path:
    """runs/<time>-<preset>-<data>-s<seed>: a fresh folder for each run (seed: or "0-4")."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{preset}-{data}-s{seed}"


def check_out(out: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse, before anything is written, a folder that a new run may not use: not a folder,
    or holding another run (unless `overwrite`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another path")
    if overwrite or not out.is_dir():
        return
    if any(p.name != LOCK for p in out.iterdir()):
        if (out / CHECKPOINT).is_file() and not (out / SUMMARY).is_file():
            raise UserError(f"--out {out}: holds an unfinished run; continue it with "
                            f"--resume {out}, or start afresh with --overwrite")
        raise UserError(f"--out {out}: the folder is not empty (another run?); "
                        "choose a new folder or pass --overwrite")


def prepare(out: str | os.PathLike, overwrite: bool = False, *, resume: bool = False,
            marker: str = CHECKPOINT) -> Path:
    """Create and lock the run folder; refuse one that holds another run unless `overwrite`.

    With `resume`, the folder must hold `marker` (a checkpoint; a K-model folder: its
    seeds.json) and is kept as it is. Call `release` when the run ends.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another path")
    if resume and not (out / marker).is_file():
        raise CheckpointError(f"--resume {out}: no {marker} there; pass the folder of a "
                              "run that was interrupted")
    try:
        out.mkdir(parents=True, exist_ok=True)
        _lock(out)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}); "
                        "choose a writable folder") from e
    try:
        if not resume:
            check_out(out, overwrite)
        if overwrite and not resume:
            for name in (CONFIG, METRICS, SUMMARY, CHECKPOINT):
                (out / name).unlink(missing_ok=True)
    except BaseException:
        release(out)
        raise
    return out


def _lock(out: Path) -> None:
    """Take the folder's flock (no-op if this process holds it); UserError if another does."""
    key = out.resolve()
    if key in _HELD:
        return
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {pid})" if pid.isdigit() else ""
            raise UserError(f"--out {out}: another lecun1989 run{who} is writing to it; wait "
                            "for it to end or choose another folder") from None
        except OSError:  # a file system without flock: run unlocked
            break
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the lock file was removed while we waited for it: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd


def release(out: str | os.PathLike) -> None:
    """Drop the folder's lock taken by `prepare` (and remove its file)."""
    out = Path(out)
    fd = _HELD.pop(out.resolve(), None)
    if fd is None:
        return
    (out / LOCK).unlink(missing_ok=True)  # while still locked: nobody can take the old file
    os.close(fd)
