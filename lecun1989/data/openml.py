"""MNIST-784 through scikit-learn's fetch_openml (as the notebook did), sampled to paper sizes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import threading
import warnings
import zipfile
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from lecun1989.data.base import PAPER_SIZES, DigitData, make_digit_data
from lecun1989.data.checks import check_digits, one_line
from lecun1989.data.files import MAX_BYTES, check_regular
from lecun1989.data.transforms import to_signed, transform_manifest
from lecun1989.errors import DataError
from lecun1989.files import write_atomic

OPENML_URL = "https://www.openml.org"
URL_ENV = "LECUN1989_OPENML_URL"
DATASET, VERSION = "mnist_784", 1
MNIST_ROWS = 70000
N_RETRIES = 1
_SKLEARN_URLS = ("_SEARCH_NAME", "_DATA_INFO", "_DATA_FEATURES", "_DATA_QUALITIES")
_LOCK = threading.Lock()
OFFLINE_FIX = ("check the internet connection, or use the offline sources: --data mnist-5k, "
               "or --data usps --data-dir DIR with zip.train.gz/zip.test.gz")


def openml_base() -> str:
    """The OpenML server: LECUN1989_OPENML_URL, else OPENML_URL."""
    return (os.environ.get(URL_ENV, "").strip() or OPENML_URL).rstrip("/")


@contextmanager
def _openml_at(base: str, timeout: float):
    """Point scikit-learn's OpenML API URLs at base and give its sockets a timeout, for a while."""
    import sklearn.datasets._openml as sk

    with _LOCK:
        saved = {name: getattr(sk, name, None) for name in _SKLEARN_URLS}
        if base != OPENML_URL and None in saved.values():
            raise DataError(one_line(f"{URL_ENV}={base}: this scikit-learn version does not let "
                                     f"the OpenML server be changed; unset {URL_ENV}"))
        old_timeout = socket.getdefaulttimeout()
        try:
            for name, url in saved.items():
                if url is not None:
                    setattr(sk, name, url.replace(OPENML_URL, base, 1))
            socket.setdefaulttimeout(timeout)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="A network error occurred")
                yield
        finally:
            socket.setdefaulttimeout(old_timeout)
            for name, url in saved.items():
                if url is not None:
                    setattr(sk, name, url)


def _arff_parser() -> tuple[str, dict | None]:
    """pandas (fast) with the class column's categories spelled out, else liac-arff (slow)."""
    try:
        from pandas import CategoricalDtype
    except ImportError:
        return "liac-arff", None
    # scikit-learn 1.9 with pandas 3 infers integer categories for the class column and then
    # fails on them; naming the categories as OpenML does ("0".."9") avoids that.
    return "pandas", {"dtype": {784: CategoricalDtype([str(d) for d in range(10)])}}


def fetch_mnist(cache: Path, timeout: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(pixels float64 (N, 784) in 0..255, labels float64, provenance) of OpenML's mnist_784 v1."""
    from sklearn.datasets import fetch_openml

    base = openml_base()
    parser, read_csv_kwargs = _arff_parser()
    try:
        with _openml_at(base, timeout):
            bunch = fetch_openml(DATASET, version=VERSION, data_home=str(cache), as_frame=False,
                                 parser=parser, read_csv_kwargs=read_csv_kwargs,
                                 n_retries=N_RETRIES, delay=1.0)
        labels = np.asarray(bunch.target).astype(np.float64)
        pixels = np.asarray(bunch.data, dtype=np.float64)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, HTTPException) as e:
        raise DataError(one_line(f"could not fetch {DATASET} from OpenML ({base}): "
                                 f"{type(e).__name__}: {e}; {OFFLINE_FIX}")) from None
    details = dict(bunch.details)
    url = details.get("url", "")
    local = cache / "openml" / "openml.org" / (urlparse(url).path.lstrip("/") + ".gz")
    info = {"openml": {k: details.get(k) for k in ("id", "name", "version", "file_id",
                                                   "md5_checksum", "url")},
            "arff_parser": parser,
            "files": [{"name": local.name, "path": str(local), "sha256_uncompressed":
                       _gunzip_sha256(local)}],
            "urls": [f"{base}/d/{details.get('id')}", url]}
    return pixels, labels, info


def mnist_arrays(cache: Path, timeout: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """fetch_mnist's arrays, kept as a small npz in cache/mnist so the ARFF is parsed only once."""
    path = cache / "mnist" / f"{DATASET}-v{VERSION}.npz"
    fix = f"delete {path} to make it again"
    if os.path.lexists(path):
        check_regular(path, fix)
        try:
            with zipfile.ZipFile(path) as archive:  # an npz is a zip: bound what it unpacks to
                if sum(i.file_size for i in archive.infolist()) > MAX_BYTES:
                    raise DataError(one_line(f"{path}: unpacks to more than {MAX_BYTES >> 20} "
                                             f"MiB, not the cache lecun1989 writes; {fix}"))
            with np.load(path, allow_pickle=False) as z:
                pixels, labels, info = z["pixels"], z["labels"], json.loads(str(z["info"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(one_line(f"{path}: unreadable ({e}); {fix}")) from None
        if (pixels.dtype != np.uint8 or labels.dtype != np.uint8 or not isinstance(info, dict)
                or not isinstance(info.get("files"), list)):
            raise DataError(one_line(f"{path}: not the arrays lecun1989 writes; {fix}"))
    else:
        pixels, labels, info = _fetch_and_keep(path, cache, timeout)
    info["files"].append({"name": path.name, "path": str(path), "role": "parsed-array cache"})
    return pixels, labels, info


def _fetch_and_keep(path: Path, cache: Path, timeout: float):
    """fetch_mnist, checked and written to path as uint8 arrays."""
    pixels, labels, info = fetch_mnist(cache, timeout)
    fix = f"delete {cache / 'openml'} to download it again"
    check_digits(pixels, labels, name=f"{DATASET} from OpenML", fix=fix, pixels=784, low=0,
                 high=255, row_word="row")
    if not np.array_equal(pixels, np.round(pixels)):
        raise DataError(one_line(f"{DATASET} from OpenML: grey levels that are not integers; "
                                 f"{fix}"))
    pixels, labels = pixels.astype(np.uint8), labels.astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, pixels=pixels, labels=labels, info=np.array(json.dumps(info)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError as e:
        raise DataError(one_line(f"{path}: cannot write it ({e.strerror}); set LECUN1989_CACHE "
                                 f"to a writable folder")) from None
    return pixels, labels, info


def _gunzip_sha256(path: Path) -> str | None:
    """SHA-256 of a cached file's uncompressed bytes (gzip bytes vary with time stamps)."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(2**20):
                digest.update(chunk)
    except (OSError, EOFError):
        return None
    return digest.hexdigest()


def load_mnist(*, geometry: int, cache: Path, seed: int, timeout: float,
               sizes: tuple[int, int] | None, **_) -> DigitData:
    """7291 train digits sampled from MNIST's first 60000 and 2007 test from its last 10000."""
    pixels, labels, info = mnist_arrays(cache, timeout)
    name = f"{DATASET} (OpenML, cached in {cache})"
    fix = f"delete {cache / 'openml'} and {cache / 'mnist'} to download it again"
    labels = check_digits(pixels, labels, name=name, fix=fix, pixels=784, low=0, high=255,
                          rows=None if sizes else MNIST_ROWS, row_word="row")
    n_test_part = len(labels) // 7
    n_train_part = len(labels) - n_test_part
    n_train, n_test = sizes or PAPER_SIZES
    if n_train > n_train_part or n_test > n_test_part:
        raise DataError(one_line(f"{name}: sizes {n_train}/{n_test} exceed its train/test parts "
                                 f"{n_train_part}/{n_test_part}; ask for fewer digits"))
    rng = np.random.default_rng(seed)
    train_idx = rng.choice(n_train_part, n_train, replace=False)
    test_idx = n_train_part + rng.choice(n_test_part, n_test, replace=False)
    split = {}
    for part, idx in (("train", train_idx), ("test", test_idx)):
        images = to_signed(pixels[idx], side=28, max_value=255, geometry=geometry)
        split[part] = (images, labels[idx])
    manifest = {
        "description": f"OpenML {DATASET} v{VERSION} via sklearn.datasets.fetch_openml, sampled",
        **info, **transform_manifest(side=28, max_value=255, geometry=geometry), "seed": seed,
        "sampling": f"numpy.random.default_rng(seed).choice without replacement: train from rows "
                    f"0..{n_train_part - 1}, then test from rows {n_train_part}..{len(labels) - 1};"
                    f" indices in sampled order, which is the training order",
        "indices": {"train": train_idx.tolist(), "test": test_idx.tolist()},
    }
    return make_digit_data("mnist", split["train"], split["test"], manifest)
