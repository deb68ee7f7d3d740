"""The run directory: config.json, metrics.jsonl, summary.json, model.safetensors.

Every file is written atomically (lecun1989.files: a temporary file, fsync, a rename), so a
run killed at any moment leaves only complete files behind, and a write that fails (a full
disk, no permission) is one line naming the file and how to go on. A run holds `.lock`
(fcntl.flock) while it writes: a second run on the same folder is refused, and a lock left by
a dead process is free again (the kernel drops flocks with their process). A run that fails
before its first checkpoint leaves no folder behind (`release`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

from lecun1989 import files
from lecun1989.errors import CheckpointError, UserError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.json", "metrics.jsonl", "summary.json", \
    "model.safetensors"
LOCK = ".lock"
SEEDS = "seeds.json"  # a K-model folder: its seeds, each a run folder seed-<s>/ (train/loop.py)
_HELD: dict[Path, int] = {}  # run folder -> file descriptor of the lock this process holds
_CREATED: dict[Path, Path] = {}  # run folder -> the top-most folder prepare created for it
_NAME_MAX, _PATH_MAX = 255, 4096  # Linux's limits, used where the file system does not say


def _resume_hint(folder: Path) -> str | None:
    """How to go on after a failed write in a run folder: resume if it holds a checkpoint;
    a seed's folder of a K-model run, its root (which resumes every seed)."""
    if (folder / CHECKPOINT).is_file() and not (folder / SUMMARY).is_file():
        root = folder.parent if (folder.parent / SEEDS).is_file() else folder
        return f"lecun1989 train --resume {root}"
    return None


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file of a run folder atomically and durably (see lecun1989.files)."""
    files.write_bytes(path, data, resume=_resume_hint(Path(path).parent))


def append_bytes(path: Path, data: bytes) -> None:
    """Append bytes to a file of a run folder and flush them to disk."""
    files.append_bytes(path, data, resume=_resume_hint(Path(path).parent))


def write_json(path: Path, obj) -> None:
    """Write JSON atomically."""
    files.write_json(path, obj, resume=_resume_hint(Path(path).parent))


def append_jsonl(path: Path, obj) -> None:
    """Append one JSON line and flush it to disk."""
    files.append_jsonl(path, obj, resume=_resume_hint(Path(path).parent))


def extend_jsonl(path: Path, records: list) -> None:
    """Append JSON lines (none: nothing) and flush them to disk, one write for all."""
    files.extend_jsonl(path, records, resume=_resume_hint(Path(path).parent))


def keep_jsonl(path: Path, keep: int) -> list[dict]:
    """The first `keep` records of a JSON-lines file, rewritten to hold only those (resume)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    try:
        records = files.read_jsonl(path, limit=keep)
    except UserError:  # a damaged line: as many complete records as come before it
        records = []
    if len(records) < keep:
        raise CheckpointError(f"{path}: holds {len(records)} complete records, the checkpoint "
                              f"{keep}; the run folder is damaged: start the run again")
    if len(lines) > keep:  # written after the checkpoint (or torn by a kill): drop them
        write_bytes(path, "".join(line + "\n" for line in lines[:keep]).encode())
    return records


def default_out(preset: str, data: str, seed: int | str, root: str = "runs") -> Path:
    """runs/<time>-<preset>-<data>-s<seed>: a fresh folder for each run (seed: or "0-4"),
    with -2, -3, ... when one of that name exists (two runs in the same second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{preset}-{data}-s{seed}"
    k = 1
    while os.path.lexists(path if k == 1 else f"{path}-{k}"):
        k += 1
    return path if k == 1 else Path(f"{path}-{k}")


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder (or file) on the way to `path` that exists: path itself, or above."""
    path = path.absolute()
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _limit(where: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(where, name)
    except (OSError, ValueError):
        return default


def check_out(out: str | os.PathLike, overwrite: bool | None = None) -> Path:
    """Refuse an --out that cannot become a run folder, before anything is created.

    One line for: a name longer than the file system allows, a path that is a file or lies
    below a file, a folder this user cannot write to (or a read-only file system); with
    `overwrite` given (False), also a folder that holds another run.
    """
    out = Path(out)
    base = _existing_ancestor(out)
    where = base if base.is_dir() else base.parent
    name_max = _limit(where, "PC_NAME_MAX", _NAME_MAX)
    for part in out.parts:
        if len(os.fsencode(part)) > name_max:
            raise UserError(f"--out: the name {part[:24]}... ({len(os.fsencode(part))} bytes) "
                            f"is longer than the file system allows ({name_max}); choose a "
                            "shorter --out")
    path_max = _limit(where, "PC_PATH_MAX", _PATH_MAX)
    if len(os.fsencode(str(out.absolute()))) >= path_max:
        raise UserError(f"--out: the path ({len(os.fsencode(str(out.absolute())))} bytes) is "
                        f"longer than the file system allows ({path_max}); choose a shorter "
                        "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another path")
    if not base.is_dir():
        raise UserError(f"--out {out}: cannot write there ({base} is a file); choose another "
                        "folder with --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write there (no permission, or a read-only file "
                        f"system, at {base}); choose another folder with --out")
    if overwrite is False and out.is_dir():
        _refuse_another_run(out)
    return out


def _refuse_another_run(out: Path) -> None:
    """UserError if the folder holds anything but our lock and temporary files."""
    if any(p.name != LOCK and not files.is_temporary(p.name) for p in out.iterdir()):
        if (out / CHECKPOINT).is_file() and not (out / SUMMARY).is_file():
            raise UserError(f"--out {out}: holds an unfinished run; continue it with "
                            f"--resume {out}, or start afresh with --overwrite")
        raise UserError(f"--out {out}: the folder is not empty (another run?); "
                        "choose a new folder or pass --overwrite")


def prepare(out: str | os.PathLike, overwrite: bool = False, *, resume: bool = False,
            marker: str = CHECKPOINT) -> Path:
    """Check, create and lock the run folder; refuse one that holds another run unless
    `overwrite`.

    With `resume`, the folder must hold `marker` (a checkpoint; a K-model folder: its
    seeds.json) and is kept as it is. Call `release` when the run ends, whatever the way (it
    removes what a run that failed before its first checkpoint created).
    """
    out = Path(out)
    if resume:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder; choose another path")
        if not (out / marker).is_file():
            raise CheckpointError(f"--resume {out}: no {marker} there; pass the folder of "
                                  "a run that was interrupted")
    else:
        check_out(out)
    base = _existing_ancestor(out)
    created = None if base == out.absolute() else base / out.absolute().relative_to(base).parts[0]
    try:
        with files.safe_write(out):
            out.mkdir(parents=True, exist_ok=True)
        if created is not None:
            _CREATED[out.resolve()] = created
        with files.safe_write(out / LOCK):
            _lock(out)
    except BaseException:
        if created is not None:
            _CREATED.pop(out.resolve(), None)
            shutil.rmtree(created, ignore_errors=True)
        raise
    try:
        if not resume and not overwrite:
            _refuse_another_run(out)
        if overwrite and not resume:
            for name in (CONFIG, METRICS, SUMMARY, CHECKPOINT):
                (out / name).unlink(missing_ok=True)
    except BaseException:  # refused: unlock, and remove only what prepare created
        created = _unlock(out)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
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


def _unlock(out: Path) -> Path | None:
    """Drop the lock (removing its file) and return the folder prepare created, if any."""
    key = out.resolve()
    fd = _HELD.pop(key, None)
    if fd is not None:
        (out / LOCK).unlink(missing_ok=True)  # while still locked: nobody can take the old file
        os.close(fd)
    return _CREATED.pop(key, None)


def release(out: str | os.PathLike) -> None:
    """Drop the folder's lock taken by `prepare` (and remove its file).

    A run that ends without a checkpoint (or, a K-model folder, its seeds.json) in its folder
    (it failed before the first one: a
    full disk, an engine that would not build) leaves nothing behind: the folder is removed
    when `prepare` created it (with the parents it created), else emptied of the run's files.
    `fit` calls `release` in a `finally:`; nothing else is needed.
    """
    out = Path(out)
    if out.resolve() not in _HELD:
        return
    created = _unlock(out)
    if any((out / marker).is_file() for marker in (CHECKPOINT, SEEDS)):
        return
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name in (CONFIG, METRICS) or files.is_temporary(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
