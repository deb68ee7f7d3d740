"""Classify pictures of handwritten digits with a trained network.

    result = predict_files("runs/demo", ["seven.png"])[0]
    results = predict_each("runs/demo", paths)  # a Prediction or a UserError per picture

A picture (any size, dark ink on light paper or the reverse, shaded, ruled or specked) is
prepared as NC89 §2 prepared its digits: cropped to the digit, "scaled linearly to 16x16,
aspect ratio kept", grey levels mapped to [-1, 1] with background -1 (analysis/picture.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lecun1989.analysis.picture import prepare, read_grey
from lecun1989.errors import UserError

__all__ = ["Prediction", "network_layers", "predict_each", "predict_files", "prepare",
           "read_grey", "reject_threshold"]


@dataclass
class Prediction:
    """One picture's classification."""

    path: str
    digit: int
    outputs: np.ndarray  # the ten output units
    margin: float  # difference of the two largest outputs (NC89 §5 rejects on it)
    threshold: float | None  # reject when margin < threshold (None: unknown)
    threshold_source: str  # where the threshold came from
    image: np.ndarray  # the (1, S, S) input the network saw
    grey: np.ndarray | None = None  # the picture as read, grey levels in [0, 1]
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # h1, h2, h3, out (float64)
    scale: float = 1.7159  # the squashing function's A: the units' range is [-A, A]

    @property
    def rejected(self) -> bool | None:
        return None if self.threshold is None else self.margin < self.threshold


def reject_threshold(checkpoint_path: str | os.PathLike, cfg) -> tuple[float | None, str]:
    """(threshold, where it came from): the run's summary.json, else the test set, else None.

    The threshold is the margin that gives 1% error on the test set (NC89 §5: 12.1% of
    the test digits rejected); `fit` stores it as summary.final.test.reject_threshold_1pct.
    """
    import json

    path = Path(checkpoint_path)
    summary_path = (path if path.is_dir() else path.parent) / "summary.json"
    try:
        value = json.loads(summary_path.read_text())["final"]["test"]["reject_threshold_1pct"]
        return float(value), f"from {summary_path} (1% error on the test set)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        from lecun1989.model.net import predict
        from lecun1989.train import checkpoint
        from lecun1989.train.loop import load_run_data
        from lecun1989.train.metrics import reject_threshold as threshold

        data = load_run_data(cfg)
        params = checkpoint.load(checkpoint_path)[1]
        outputs = predict(cfg.model, params, data.test_images)
        return threshold(outputs, data.test_labels, 0.01), \
            f"recomputed on the {data.name} test set (summary.json has none)"
    except UserError as e:
        return None, f"unknown: summary.json has none and the test set is unavailable ({e})"


def network_layers(cfg, params: dict[str, np.ndarray], images: np.ndarray) -> dict:
    """Every layer's output for images (N, 1, S, S) under a run's config (model.net.layers)."""
    from lecun1989.model.net import layers

    return layers(cfg.model, params, images)


def predict_each(checkpoint_path: str | os.PathLike, paths: list) -> list:
    """For each picture, its Prediction or the UserError that names the file.

    A bad checkpoint raises at once: no picture can be classified without it.
    """
    from lecun1989.model.net import predict
    from lecun1989.train import checkpoint
    from lecun1989.train.metrics import margins

    cfg, params, _, _ = checkpoint.load(checkpoint_path)
    prepared: list = []
    for p in paths:
        try:
            grey = read_grey(p)
            prepared.append((grey, prepare(grey, cfg.model.input_size)))
        except UserError as e:
            message = str(e)
            prepared.append(e if message.startswith(str(p)) else UserError(f"{p}: {message}"))
    good = [x for x in prepared if not isinstance(x, UserError)]
    if not good:
        return prepared
    images = np.stack([x for _, x in good])
    outputs = predict(cfg.model, params, images)
    layers = network_layers(cfg, params, images)
    threshold, source = reject_threshold(checkpoint_path, cfg)
    made = iter(zip(good, outputs, margins(outputs), range(len(good)), strict=True))
    results = []
    for p, x in zip(paths, prepared, strict=True):
        if isinstance(x, UserError):
            results.append(x)
            continue
        (grey, image), o, m, k = next(made)
        results.append(Prediction(str(p), int(o.argmax()), o, float(m), threshold, source,
                                  image, grey, {n: v[k] for n, v in layers.items()},
                                  cfg.model.tanh_scale))
    return results


def predict_files(checkpoint_path: str | os.PathLike, paths: list) -> list[Prediction]:
    """Classify each picture; the first bad picture raises its UserError (naming the file)."""
    results = predict_each(checkpoint_path, paths)
    for r in results:
        if isinstance(r, UserError):
            raise r
    return results
