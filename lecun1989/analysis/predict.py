"""Classify a picture of a handwritten digit with a trained network.

    result = predict_files("runs/demo", ["seven.png"])[0]

A picture (any size, dark ink on light paper or the reverse) is prepared as NC89 §2
prepared its digits: cropped to the digit, "scaled linearly to 16x16, aspect ratio kept",
centred, grey levels mapped to [-1, 1] with background -1.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lecun1989.errors import UserError

MAX_PIXELS = 64_000_000  # larger pictures are refused (PIL's decompression-bomb guard)
WORK_SIDE = 1024  # pictures are shrunk to at most this many pixels a side before anything else
INK = 0.25  # a pixel is ink when it is this far from the background towards the darkest ink
BOX = {16: 16, 28: 20}  # the digit's longer side: NC89 fills 16x16; MNIST a 20x20 box in 28x28


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """A picture as grey levels in [0, 1]; transparent pixels count as white paper."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a PNG or JPEG picture of one digit")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; give a PNG or JPEG picture of one digit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UserError(f"{path}: {im.width}x{im.height} pixels is too large "
                                    f"(limit {MAX_PIXELS:,}); crop or shrink the picture")
                im.draft("L", (WORK_SIDE, WORK_SIDE))  # JPEG: decode at a reduced scale
                im.load()
                im.thumbnail((WORK_SIDE, WORK_SIDE))
                if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    paper = Image.new("RGBA", im.size, "white")
                    im = Image.alpha_composite(paper, im.convert("RGBA"))
                grey = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"{path}: refused as a possible decompression bomb ({e}); "
                        "crop or shrink the picture") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"{path}: not a readable picture ({type(e).__name__}); "
                        "give a PNG or JPEG of one digit") from None
    if min(grey.shape) < 2:
        raise UserError(f"{path}: {grey.shape[1]}x{grey.shape[0]} pixels is too small to hold "
                        "a digit")
    return grey


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Ink in [0, 1] (0: background). Polarity from the border: the border is the background."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    ink = grey if background < 0.5 else 1.0 - grey  # light-on-dark stays, dark-on-light flips
    background = min(background, 1.0 - background)
    span = float(ink.max()) - background
    if span < 0.1:
        raise UserError("no digit found: the picture is (nearly) one grey level; give a picture "
                        "with a visible digit")
    return np.clip((ink - background) / span, 0.0, 1.0)


def prepare(grey: np.ndarray, size: int = 16) -> np.ndarray:
    """Crop to the digit, scale its longer side to fill the box, centre, map to [-1, 1]."""
    ink = ink_map(grey)
    rows, cols = np.nonzero(ink > INK)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    box = BOX.get(size, size)
    scale = box / max(h, w)  # NC89 §2: scaled linearly, aspect ratio kept
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = Image.fromarray(crop.astype(np.float32)).resize(
        (new_w, new_h), Image.Resampling.BILINEAR)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = np.clip(np.asarray(scaled), 0, 1)
    return (out * 2 - 1)[None]  # (1, size, size): background -1, ink up to +1


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

    @property
    def rejected(self) -> bool | None:
        return None if self.threshold is None else self.margin < self.threshold


def reject_threshold(checkpoint_path: str | os.PathLike, cfg) -> tuple[float | None, str]:
    """(threshold, where it came from): the run's summary.json, else the test set, else None.

    The threshold is the margin that gives 1% error on the test set (NC89 §5: 12.1% of
    the test digits rejected); `fit` stores it as summary.final.test.reject_threshold_1pct.
    """
    import json  # noqa: PLC0415

    path = Path(checkpoint_path)
    summary_path = (path if path.is_dir() else path.parent) / "summary.json"
    try:
        value = json.loads(summary_path.read_text())["final"]["test"]["reject_threshold_1pct"]
        return float(value), f"from {summary_path} (1% error on the test set)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        from lecun1989.model.net import predict
        from lecun1989.train import checkpoint  # noqa: PLC0415
        from lecun1989.train.loop import load_run_data  # noqa: PLC0415
        from lecun1989.train.metrics import reject_threshold as threshold  # noqa: PLC0415

        data = load_run_data(cfg)
        params = checkpoint.load(checkpoint_path)[1]
        outputs = predict(cfg.model, params, data.test_images)
        return threshold(outputs, data.test_labels, 0.01), \
            f"recomputed on the {data.name} test set (summary.json has none)"
    except UserError as e:
        return None, f"unknown: summary.json has none and the test set is unavailable ({e})"


def predict_files(checkpoint_path: str | os.PathLike, paths: list) -> list[Prediction]:
    """Classify each picture with the checkpoint's network."""
    from lecun1989.model.net import predict
    from lecun1989.train import checkpoint  # noqa: PLC0415
    from lecun1989.train.metrics import margins  # noqa: PLC0415

    cfg, params, _, _ = checkpoint.load(checkpoint_path)
    images = np.stack([prepare(read_grey(p), cfg.model.input_size) for p in paths])
    outputs = predict(cfg.model, params, images)
    threshold, source = reject_threshold(checkpoint_path, cfg)
    return [Prediction(str(p), int(o.argmax()), o, float(m), threshold, source, x)
            for p, o, m, x in zip(paths, outputs, margins(outputs), images, strict=True)]
