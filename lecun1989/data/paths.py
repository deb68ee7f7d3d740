"""Where the data lives: the user's data folder (LECUN1989_DATA) and the cache (LECUN1989_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "LECUN1989_DATA"
CACHE_ENV = "LECUN1989_CACHE"


def data_dir_from_env() -> Path | None:
    """The folder named by LECUN1989_DATA, or None when it is unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """LECUN1989_CACHE, else $XDG_CACHE_HOME/lecun1989, else ~/.cache/lecun1989."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lecun1989"


def resolve_cache(cache_dir: str | os.PathLike | None) -> Path:
    """The cache root to use: the argument, else cache_root()."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
