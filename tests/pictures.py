"""Generated pictures of test digits: on clean paper, and on the paper a student photographs
(a shadow gradient, a hard shadow, ruled lines, a margin line, specks, sensor noise)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def render_digit(digit: np.ndarray, zoom: int = 14, pad: int = 60) -> np.ndarray:
    """A 16x16 [-1, 1] digit as a smooth, large ink map in [0, 1], off-centre on paper."""
    ink = (np.asarray(digit).reshape(16, 16) + 1) / 2
    big = Image.fromarray(ink.astype(np.float32), "F").resize((16 * zoom, 16 * zoom),
                                                              Image.Resampling.BICUBIC)
    return np.pad(np.clip(np.asarray(big, dtype=np.float64), 0, 1),
                  ((pad, pad + 20), (pad + 30, pad)))


def clean_paper(ink: np.ndarray) -> np.ndarray:
    """Grey levels: dark ink on evenly lit white paper."""
    return 1 - 0.9 * ink


def dirty_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey levels: the same ink on shaded, ruled, specked paper, with noise."""
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    paper = 0.95 - 0.5 * (0.6 * xx + 0.4 * yy)  # light falling off across the page
    paper = np.where((xx > 0.55) & (yy > 0.5), paper * 0.7, paper)  # a phone's hard shadow
    darkness = ink.copy()
    for r in range(25, h, 55):  # ruled lines, 2 pixels thick, lighter than the pen
        darkness[r:r + 2] = np.maximum(darkness[r:r + 2], 0.45)
    darkness[:, 40:42] = np.maximum(darkness[:, 40:42], 0.5)  # the margin line
    for _ in range(40):  # specks of 2 to 6 pixels a side
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 4)
        darkness[max(0, y - r):y + r, max(0, x - r):x + r] = 0.8
    return np.clip(paper * (1 - 0.85 * darkness) + rng.normal(0, 0.015, ink.shape), 0, 1)


def save_grey(grey: np.ndarray, path) -> str:
    """Write grey levels in [0, 1] as an 8-bit greyscale PNG."""
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(path)
    return str(path)
