"""The DigitData container, the registry of sources, the paper's split sizes, manifests."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from lecun1989 import paper
from lecun1989.data.checks import check_digits


@dataclass(frozen=True)
class Source:
    """A digit source: `module.function(geometry=, seed=, data_dir=, cache=, timeout=,
    download=, sizes=)` returns its DigitData (a loader takes what it needs, **_ the rest)."""

    module: str
    function: str
    geometries: tuple[int, ...]  # the sides it comes in


# A new source is one module and one line here.
SOURCES: dict[str, Source] = {
    "usps": Source("lecun1989.data.usps", "load_usps", (16,)),
    "mnist": Source("lecun1989.data.openml", "load_mnist", (16, 28)),
    "mnist-5k": Source("lecun1989.data.bundled", "load_mnist_5k", (16, 28)),
    "digits": Source("lecun1989.data.bundled", "load_digits_8x8", (16,)),
}
GEOMETRIES: dict[str, tuple[int, ...]] = {name: s.geometries for name, s in SOURCES.items()}
PAPER_SIZES = (paper.TRAIN_SIZE, paper.TEST_SIZE)
_LIBRARIES = ("numpy", "torch", "scikit-learn", "mlxtend")


@dataclass(frozen=True, eq=False)
class DigitData:
    """Train and test digits, float32 (N, 1, S, S) in [-1, 1], with provenance: a source's
    as loaded, or a run's (limits and the validation split applied: train.loop.load_run_data)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    manifest: dict = field(default_factory=dict)
    note: str = ""  # how the source was chosen, printed first


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
