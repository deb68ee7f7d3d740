"""The digits a run trains and is evaluated on, their digest, the paper's metrics of a
network on them, and the library versions a run records."""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Callable

import numpy as np

from lecun1989 import data as datasets
from lecun1989.config import RunConfig
from lecun1989.data.base import DigitData, library_versions
from lecun1989.errors import UserError
from lecun1989.train.metrics import evaluate_outputs

LIBRARIES = ("lecun1989", "torch", "numpy", "numba", "llvmlite", "scikit-learn", "mlxtend",
             "safetensors")
RunData = DigitData  # the arrays a run trains and evaluates on (one class for both)


def versions() -> dict[str, str]:
    """Python, platform and library versions (results drift with them)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    """versions(), looked up once a process (each model's config.json records them: 13 ms of
    package metadata a model)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            **library_versions(LIBRARIES)}


def load_run_data(cfg: RunConfig, **load_kwargs) -> DigitData:
    """Load cfg.data (resolving "auto" in place), then apply limits and a validation split."""
    d = cfg.data
    data_dir = d.data_dir or datasets.data_dir_from_env()
    note = ""
    if d.name == "auto":
        d.name, note = datasets.default_source(data_dir)
    raw = datasets.load(d.name, geometry=cfg.model.input_size, data_dir=data_dir,
                        seed=d.sample_seed, **load_kwargs)
    xtr, ytr, xte, yte = raw.train_images, raw.train_labels, raw.test_images, raw.test_labels
    manifest = dict(raw.manifest)
    if d.validation:
        if d.validation >= len(ytr):
            raise UserError(f"data.validation={d.validation} must be below the "
                            f"{len(ytr)} training digits")
        # Model selection never sees the test set: the last N training digits stand in for it.
        xte, yte = xtr[-d.validation:], ytr[-d.validation:]
        xtr, ytr = xtr[:-d.validation], ytr[:-d.validation]
        manifest["validation"] = f"test set replaced by the last {d.validation} training digits"
    if d.limit_train:
        xtr, ytr = xtr[:d.limit_train], ytr[:d.limit_train]
    if d.limit_test:
        xte, yte = xte[:d.limit_test], yte[:d.limit_test]
    manifest["used"] = {"train": len(ytr), "test": len(yte)}
    return DigitData(d.name, xtr, ytr, xte, yte, manifest, note)


def data_sha256(data: RunData) -> str:
    """A digest of the arrays a run trains and is evaluated on (resume refuses other data)."""
    h = hashlib.sha256()
    for a in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()[:16]


def evaluate(predict: Callable[[np.ndarray], np.ndarray], data: RunData, cfg: RunConfig
             ) -> dict:
    """The paper's metrics on the train and test sets of the outputs `predict(images)` gives
    (a ModelView's predict, or Net1989.predict_numpy: no training engine needed)."""
    return {split: evaluate_outputs(predict(images), labels, cfg.train.target)
            for split, images, labels in (("train", data.train_images, data.train_labels),
                                          ("test", data.test_images, data.test_labels))}
