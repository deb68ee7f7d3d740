"""The one validation of digit arrays: shape, labels, finite pixels in range, rows, classes,
and some ink (a set of blank images is refused)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lecun1989.errors import DataError

TOLERANCE = 1e-6


def one_line(text: object) -> str:
    """Collapse any whitespace (newlines included) so that a message stays on one line."""
    return " ".join(str(text).split())


def check_digits(images: np.ndarray, labels: np.ndarray, *, name: str, fix: str, pixels: int,
                 low: float = -1.0, high: float = 1.0, rows: int | None = None,
                 counts: Sequence[int] | None = None, row_word: str = "line") -> np.ndarray:
    """Raise a one-line DataError at the first problem in (images, labels); return int64 labels."""
    images, labels = np.asarray(images), np.asarray(labels, dtype=np.float64)
    if images.ndim != 2 or images.shape[1] != pixels or len(labels) != len(images):
        raise DataError(one_line(f"{name}: pixel table of shape {images.shape} for "
                                 f"{len(labels)} labels, expected {pixels} pixels a digit; {fix}"))
    if len(labels) == 0:
        raise DataError(one_line(f"{name}: no digits in it; {fix}"))
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (labels > 9)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(one_line(f"{name} {row_word} {i + 1}: label {labels[i]:g} is not a digit "
                                 f"0..9; {fix}"))
    bad = ~np.isfinite(images) | (images < low - TOLERANCE) | (images > high + TOLERANCE)
    bad_rows = bad.any(axis=1)
    if bad_rows.any():
        i = int(np.argmax(bad_rows))
        j = int(np.argmax(bad[i]))
        raise DataError(one_line(f"{name} {row_word} {i + 1}: pixel {j + 1} is {images[i, j]:g}, "
                                 f"outside [{low:g}, {high:g}]; {fix}"))
    if rows is not None and len(labels) != rows:
        raise DataError(one_line(f"{name}: {len(labels)} digits, expected {rows}; {fix}"))
    out = labels.astype(np.int64)
    if counts is not None:
        got = np.bincount(out, minlength=10).tolist()
        if got != list(counts):
            raise DataError(one_line(f"{name}: digits per class 0..9 are "
                                     f"{' '.join(map(str, got))}, expected "
                                     f"{' '.join(map(str, counts))}; {fix}"))
    spread = images.max(axis=1) - images.min(axis=1)
    if not (spread > TOLERANCE).any():  # labels right, images empty: nothing to learn from
        raise DataError(one_line(f"{name}: every digit is blank (all its pixels "
                                 f"{images[0, 0]:g}), there is no ink to learn from; {fix}"))
    return out
