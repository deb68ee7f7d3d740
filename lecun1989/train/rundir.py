"""The run directory: config.json, metrics.jsonl, summary.json, model.safetensors.

Every file is written atomically (a temporary file, then a rename), so a run killed at
any moment leaves only complete files behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lecun1989.errors import UserError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.json", "metrics.jsonl", "summary.json", \
    "model.safetensors"


def write_json(path: Path, obj) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


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


def default_out(preset: str, data: str, seed: int, root: str = "runs") -> Path:
    """runs/<time>-<preset>-<data>-s<seed>: a fresh folder for each run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{preset}-{data}-s{seed}"


def prepare(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create the run folder; refuse one that holds another run unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out}: the folder is not empty (another run?); "
                        "choose a new folder or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror}); "
                        "choose a writable folder") from e
    if overwrite:
        for name in (CONFIG, METRICS, SUMMARY, CHECKPOINT):
            (out / name).unlink(missing_ok=True)
    return out
