"""The shared image transform (resize, [0, max] -> [-1, 1]) and the stratified paper-size split."""

from __future__ import annotations

import numpy as np

from lecun1989.data.base import PAPER_SIZES

RESIZE = {
    "function": "torch.nn.functional.interpolate",
    "mode": "bilinear",
    "align_corners": False,
    "antialias": False,
}


def to_signed(images: np.ndarray, *, side: int, max_value: float, geometry: int) -> np.ndarray:
    """Map (N, side*side) grey levels in [0, max_value] to float32 (N, 1, G, G) in [-1, 1].
    (torch's resize, as the notebook's; imported here: the USPS digits need no torch)"""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(-1, 1, side, side))
    x = x / max_value
    if side != geometry:
        x = F.interpolate(x, size=(geometry, geometry), mode=RESIZE["mode"],
                          align_corners=RESIZE["align_corners"], antialias=RESIZE["antialias"])
    return (x * 2 - 1).clamp_(-1, 1).numpy()


def transform_manifest(*, side: int, max_value: float, geometry: int) -> dict:
    """How to_signed made the pixels, for the manifest."""
    resize = None if side == geometry else {**RESIZE, "from": side, "to": geometry}
    return {"geometry": geometry, "native_size": side, "resize": resize,
            "pixels": f"v / {max_value:g} * 2 - 1 (after any resize), background -1"}


def paper_test_size(n: int) -> int:
    """How many of n digits go to the test set in the paper's 7291:2007 proportion."""
    return round(n * PAPER_SIZES[1] / sum(PAPER_SIZES))


def stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices in the paper's proportion, per class (largest remainders), in seeded order."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    n_test = paper_test_size(len(labels))
    exact = counts * n_test / len(labels)
    per_class = np.floor(exact).astype(np.int64)
    short = n_test - int(per_class.sum())
    per_class[np.argsort(-(exact - per_class), kind="stable")[:short]] += 1
    train, test = [], []
    for c, k in zip(classes, per_class, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
