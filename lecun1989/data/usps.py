"""The paper's USPS digits: found in a data folder or the cache, else downloaded (ESL, LIBSVM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lecun1989.data.base import DigitData, make_digit_data
from lecun1989.data.checks import check_digits, one_line
from lecun1989.data.download import fetch
from lecun1989.data.files import decompress, read_bytes, sha256
from lecun1989.data.formats import parse_esl, parse_libsvm
from lecun1989.data.paths import DATA_ENV, data_dir_from_env
from lecun1989.errors import DataError
from lecun1989.files import write_atomic

ESL_URL = "https://hastie.su.domains/ElemStatLearn/datasets"
LIBSVM_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass"
URL_ENV = "LECUN1989_USPS_URL"
SPLITS = ("train", "test")
NAMES = {  # format -> split -> file names looked for in a folder; the first is the download's
    "esl": {"train": ("zip.train.gz", "zip.train"), "test": ("zip.test.gz", "zip.test")},
    "libsvm": {"train": ("usps.bz2",), "test": ("usps.t.bz2",)},
}
PARSERS = {"esl": parse_esl, "libsvm": parse_libsvm}
EXPECTED = {  # split -> (rows, digits per class 0..9), from the ESL files
    "train": (7291, (1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644)),
    "test": (2007, (359, 264, 198, 166, 200, 160, 170, 147, 166, 177)),
}
REFERENCE_SHA256 = {
    "zip.train.gz": "0424b2e8b345e55ef9cf10b86d88f112de7e7b30625cc5511d3a1beb436c88bf",
    "zip.test.gz": "2033fb0250fef8b4fcf7b3c7337c37d18a8759ce1bc6e5ab95cb4132e5910ed0",
}
HOW_TO_GET = (f"put zip.train.gz and zip.test.gz (from {ESL_URL}) in a folder and pass "
              f"--data-dir DIR or set {DATA_ENV}=DIR")
URLS_FILE = "urls.json"


def base_urls() -> dict[str, str]:
    """Download bases by format, in the order tried; LECUN1989_USPS_URL replaces both."""
    override = os.environ.get(URL_ENV, "").strip().rstrip("/")
    if override:
        return {"esl": override, "libsvm": override}
    return {"esl": ESL_URL, "libsvm": LIBSVM_URL}


def find_files(folder: Path, *, partial_ok: bool = False) -> tuple[str, dict[str, Path]] | None:
    """(format, split -> path) of the USPS files in folder or folder/usps; None when absent."""
    for where in (folder, folder / "usps"):
        for fmt, names in NAMES.items():
            found = {}
            for split in SPLITS:
                hits = [where / n for n in names[split] if os.path.lexists(where / n)]
                if hits:
                    found[split] = hits[0]
            if len(found) == len(SPLITS):
                return fmt, found
            if found and not partial_ok:
                have = next(iter(found.values()))
                missing = " or ".join(next(names[s] for s in SPLITS if s not in found))
                raise DataError(one_line(f"{where}: has {have.name} but no {missing}; put both "
                                         f"the train and the test file there"))
    return None


def check_folder(folder: Path, flag: str, fix: str) -> None:
    """A one-line DataError unless the data folder (from `flag`) exists and is a folder."""
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "no such folder"
        raise DataError(one_line(f"{folder} ({flag}): {problem}; {fix}"))


def locate(data_dir, cache: Path) -> tuple[str, dict[str, Path], str] | None:
    """(format, files, how found) from data_dir or LECUN1989_DATA, else the cache; else None."""
    folder = Path(data_dir).expanduser() if data_dir is not None else data_dir_from_env()
    if folder is not None:
        flag = "--data-dir" if data_dir is not None else DATA_ENV
        check_folder(folder, flag, HOW_TO_GET)
        hit = find_files(folder)
        if hit is None:
            raise DataError(one_line(f"{folder} ({flag}): no zip.train.gz and zip.test.gz (nor "
                                     f"zip.train/zip.test, usps.bz2/usps.t.bz2) in it; "
                                     f"{HOW_TO_GET}"))
        return *hit, f"{flag} {folder}"
    hit = find_files(cache, partial_ok=True)
    return None if hit is None else (*hit, f"cache {cache}")


def read_split(path: Path, fmt: str, split: str, fix: str, name: str | None = None):
    """(pixels float32 (N, 256), labels int64, sha256) of one verified USPS file."""
    raw = read_bytes(path, fix)
    name = name or str(path)
    pixels, labels = PARSERS[fmt](decompress(raw, name, fix), name, fix)
    rows, counts = EXPECTED[split]
    labels = check_digits(pixels, labels, name=name, fix=fix, pixels=256, rows=rows, counts=counts)
    return np.clip(pixels, -1, 1).astype(np.float32), labels, sha256(raw)


def load_usps(*, data_dir, cache: Path, download: bool, timeout: float, **_) -> DigitData:
    """The paper's 7291/2007 split in the files' order, 16x16 in [-1, 1]."""
    cache = cache / "usps"
    hit, verified = locate(data_dir, cache), {}
    if hit is None:
        if not download:
            raise DataError(one_line(f"the USPS files are not in the cache {cache} and download "
                                     f"is off; {HOW_TO_GET}, or allow the download"))
        verified = download_usps(cache, timeout)
        hit = locate(None, cache)
    fmt, files, how = hit
    in_cache = how.startswith("cache")
    arrays, described = {}, []
    for split, path in files.items():
        fix = (f"delete {cache} to download it again" if in_cache else
               f"replace it with the original from {base_urls()[fmt]}/{NAMES[fmt][split][0]}")
        pixels, labels, digest = verified.get(path) or read_split(path, fmt, split, fix)
        arrays[split] = (pixels.reshape(-1, 1, 16, 16), labels)
        described.append({"split": split, "name": path.name, "path": str(path.resolve()),
                          "format": fmt, "sha256": digest,
                          "matches_reference_sha256": REFERENCE_SHA256.get(path.name) == digest})
    manifest = {
        "description": "USPS zip-code digits (ESL zip.train/zip.test), the paper's 7291/2007 split",
        "found": how, "files": described, "urls": _read_urls(cache) if in_cache else None,
        "order": "the files' order, not shuffled", "seed": None, "geometry": 16,
        "native_size": 16, "resize": None, "pixels": "as in the files: [-1, 1], background -1",
    }
    return make_digit_data("usps", arrays["train"], arrays["test"], manifest)


def download_usps(cache: Path, timeout: float) -> dict[Path, tuple]:
    """Download, verify and keep the USPS files in cache (ESL, else LIBSVM); their read_split."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fix = f"set LECUN1989_CACHE to a writable folder, or {HOW_TO_GET}"
        problem = f"cannot create the cache folder ({e.strerror})"
        raise DataError(one_line(f"{cache}: {problem}; {fix}")) from None
    failures = []
    for fmt, base in base_urls().items():
        urls = {split: f"{base}/{NAMES[fmt][split][0]}" for split in SPLITS}
        try:
            return _download_verified(cache, fmt, urls, timeout)
        except DataError as e:
            failures.append(str(e))
    raise DataError(one_line(f"could not download the USPS digits ({'; '.join(failures)}); "
                             f"{HOW_TO_GET}"))


def _download_verified(cache: Path, fmt: str, urls: dict[str, str], timeout: float) -> dict:
    """Fetch both files to temporary files, verify them, then rename them into the cache."""
    temps: dict[str, Path] = {}
    verified = {}
    try:
        for split, url in urls.items():
            temps[split] = fetch(url, cache, timeout)
            verified[cache / NAMES[fmt][split][0]] = read_split(
                temps[split], fmt, split, "the server sent a wrong file", name=url)
        for split, tmp in temps.items():
            os.replace(tmp, cache / NAMES[fmt][split][0])
        write_atomic(cache / URLS_FILE, json.dumps(urls, indent=1).encode())
        return verified
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _read_urls(cache: Path) -> dict | None:
    """Where the cached files were downloaded from (provenance only; None if unknown)."""
    try:
        return json.loads((cache / URLS_FILE).read_text())
    except (OSError, ValueError):
        return None
