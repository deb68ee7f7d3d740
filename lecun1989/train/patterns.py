"""What each pass presents, the same for every engine: NC89's fixed order (or shuffled and
shifted patterns for ablations), each pass's step size, and the dropout masks."""

from __future__ import annotations

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.model.params import conv_out
from lecun1989.model.tables import MAPS


def lr_at(cfg: RunConfig, pass_index: int, step: int, total_steps: int) -> float:
    """The step size for a pass: lr, replaced by lr_schedule entries, or a linear decay."""
    t = cfg.train
    lr = t.lr
    for first_pass, value in sorted(t.lr_schedule or []):
        if pass_index >= first_pass:
            lr = value
    if t.lr_final is not None:
        lr = t.lr + (t.lr_final - t.lr) * step / max(total_steps - 1, 1)
    return float(lr)


def pass_data(cfg: RunConfig, pass_index: int, images: np.ndarray, labels: np.ndarray):
    """The patterns of one pass: NC89's fixed order, or shuffled / shifted for ablations."""
    t = cfg.train
    if not t.shuffle and not t.augment_shift:
        return images, labels
    rng = np.random.default_rng([cfg.seed, pass_index])
    order = rng.permutation(len(labels)) if t.shuffle else np.arange(len(labels))
    images, labels = images[order], labels[order]
    if t.augment_shift:
        images = _shift(images, rng.integers(-t.augment_shift, t.augment_shift + 1,
                                             size=(len(labels), 2)))
    return images, labels


def patterns_depend_on_seed(cfg: RunConfig) -> bool:
    """True when each seed sees other patterns (shuffle, shifts): such models train apart."""
    return bool(cfg.train.shuffle or cfg.train.augment_shift)


def dropout_keep(cfg: RunConfig, pass_index: int, n: int) -> np.ndarray | None:
    """The pass's dropout masks (n, 192) in the model's dtype: 1 / (1 - p) with probability
    1 - p, else 0; None without dropout. Drawn here (seed, pass) for every engine alike: the
    same run gives the same numbers on either engine and after a resume."""
    p = cfg.model.dropout
    if not p:
        return None
    rng = np.random.default_rng([cfg.seed, pass_index, 1])  # its own stream (pass_data: 2 keys)
    size = MAPS * conv_out(conv_out(cfg.model.input_size)) ** 2  # H2's units
    return ((rng.random((n, size)) >= p) / (1 - p)).astype(cfg.model.dtype)


def _shift(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each image by (dy, dx) pixels, filling with the background value."""
    out = np.full_like(images, -1.0)  # the digits' background
    size = images.shape[-1]
    for i, (dy, dx) in enumerate(shifts):
        ys, yd = slice(max(0, -dy), size - max(0, dy)), slice(max(0, dy), size - max(0, -dy))
        xs, xd = slice(max(0, -dx), size - max(0, dx)), slice(max(0, dx), size - max(0, -dx))
        out[i, :, yd, xd] = images[i, :, ys, xs]
    return out
