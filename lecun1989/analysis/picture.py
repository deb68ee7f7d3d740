"""Reading a picture of a handwritten digit and preparing it as the network's 16x16 input.

    x = prepare(read_grey("seven.png"))  # (1, 16, 16) in [-1, 1], ink +1, paper -1

NC89 §2: the digits were "normalized to 16x16 pixels", their size "scaled linearly, aspect
ratio kept". A photo of real paper first needs what a reader does without thinking: see
past the shading, the ruling and the specks. `prepare` does, in this order:

1. polarity: the border is paper; light ink on dark paper is inverted;
2. flatten: divide by the paper's brightness, estimated by a grey-level closing (a max then
   a min filter a third of the picture wide) that erases strokes and keeps larger shadows;
3. threshold: Otsu's threshold on the ink strength ("strong" ink), half of it ("weak" ink:
   the stroke's soft edges, hysteresis as in Canny's edge detector);
4. ruled lines: rows (columns) whose weak ink spans 85% of the picture, in bands at most
   2% of the picture thick, are erased except where a stroke crosses them;
5. specks: connected pieces of weak ink holding fewer than 10% of the strong ink of the
   largest piece are dropped;
6. the kept ink's bounding box, its longer side scaled to the box with no margin (16: the
   USPS digits fill 16x16, 93% of the test digits touching both the top and bottom rows;
   28: MNIST's 20x20 box), by exact pixel-area averaging, centred to a fraction of a
   pixel, ink strength over its median (1 = a typical stroke) mapped to [-1, 1].

Every step is integer arithmetic, a comparison or the same float operation in the same
order, so the demo page's JavaScript copy (demo.html, `prepareGrey`) gives the same 16x16
to 1e-6 (only the additions of step 6 come in another order; predict returns float32).
The thresholds are guesses
sized on generated pictures (tests/test_predict.py); a stroke that runs from edge to edge
of a tightly cropped picture is taken for a ruled line when it is that thin.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lecun1989.errors import UserError

MAX_PIXELS = 64_000_000  # larger pictures are refused (PIL's decompression-bomb guard)
WORK_SIDE = 1024  # pictures are shrunk to at most this many pixels a side before anything else
BOX = {16: 16, 28: 20}  # the digit's longer side: NC89 fills 16x16; MNIST a 20x20 box in 28x28
BINS = 256  # ink-strength histogram for Otsu's threshold
MIN_STRONG_BIN = 25  # strong ink is at least ~10% darker than the paper (no digit otherwise)
LINE_SPAN = (17, 20)  # a ruled line's weak ink covers >= 17/20 of a row (column)
LINE_THICK = 50  # ... in a band at most max(2, side // 50) pixels thick
SPECK = 10  # a piece with < 1/10 of the largest piece's strong ink is a speck
CLOSING = 6  # the background filter's radius is side // 6: it erases strokes up to a third
# of the picture wide (a tightly cropped digit's) and keeps shadows larger than that
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """A picture as grey levels in [0, 1] at full depth (16-bit PNGs too); transparent
    pixels count as white paper."""
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
                if im.format == "JPEG":
                    im.draft("L", (WORK_SIDE, WORK_SIDE))  # decode at a reduced scale
                im.load()
                grey = _grey_levels(im)
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
    if max(grey.shape) > WORK_SIDE:  # pixel-area averaging, at full depth
        scale = WORK_SIDE / max(grey.shape)
        size = (max(2, round(grey.shape[1] * scale)), max(2, round(grey.shape[0] * scale)))
        small = Image.fromarray(grey.astype(np.float32), "F").resize(size, Image.Resampling.BOX)
        grey = np.asarray(small, dtype=np.float64)
    return grey


def _grey_levels(im: Image.Image) -> np.ndarray:
    """Grey in [0, 1] for every PIL mode: 16- and 32-bit integers and floats at full depth,
    the rest through PIL's luma ("L"), transparency composited onto white paper."""
    if im.mode in (*SIXTEEN_BIT, "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max(initial=0))
        full = 65535.0 if im.mode in SIXTEEN_BIT or (im.mode == "I" and top > 255) else 255.0
        if im.mode == "F" and top <= 1:
            full = 1.0
        grey = np.clip(a / full, 0.0, 1.0)
        transparent = im.info.get("transparency")
        if isinstance(transparent, int | float):
            grey[a == transparent] = 1.0
        return grey
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        paper = Image.new("RGBA", im.size, "white")
        im = Image.alpha_composite(paper, im.convert("RGBA"))
    return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def ink_strength(grey: np.ndarray) -> np.ndarray:
    """Ink in [0, 1] (0: paper): polarity from the border, shading divided out (steps 1-2)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) < 0.5:  # light ink on dark paper
        grey = 1.0 - grey
    window = 2 * (max(grey.shape) // CLOSING) + 1
    paper = minimum_filter(maximum_filter(grey, window, mode="nearest"), window, mode="nearest")
    return np.clip(1.0 - grey / np.maximum(paper, 1e-6), 0.0, 1.0)


def otsu(hist: np.ndarray) -> int:
    """The bin t maximising the between-class variance of bins <= t and > t (Otsu 1979).

    Integer sums and the same float operations as demo.html's copy: the same t there.
    """
    hist = [int(c) for c in hist]
    total = sum(hist)
    total_sum = sum(i * c for i, c in enumerate(hist))
    best, best_t, w0, s0 = -1.0, 0, 0, 0
    for t in range(len(hist) - 1):
        w0 += hist[t]
        s0 += t * hist[t]
        w1 = total - w0
        if w0 == 0 or w1 == 0:
            continue
        d = s0 / w0 - (total_sum - s0) / w1
        between = w0 * w1 * d * d  # not d ** 2: pow() may round differently from JS
        if between > best:
            best, best_t = between, t
    return best_t


def _erase_lines(weak: np.ndarray) -> np.ndarray:
    """Weak ink less the thin bands of rows spanning the picture, except crossing strokes."""
    cleared = np.zeros_like(weak)
    for axis_mask, out in ((weak, cleared), (weak.T, cleared.T)):  # rows, then columns
        rows, width = axis_mask.shape
        flagged = LINE_SPAN[1] * axis_mask.sum(1) >= LINE_SPAN[0] * width
        thick = max(2, rows // LINE_THICK)
        r = 0
        while r < rows:
            if not flagged[r]:
                r += 1
                continue
            end = r
            while end + 1 < rows and flagged[end + 1]:
                end += 1
            if end - r + 1 <= thick:
                above = axis_mask[r - 1] if r > 0 else np.zeros(width, bool)
                below = axis_mask[end + 1] if end + 1 < rows else np.zeros(width, bool)
                out[r:end + 1] |= ~(above & below)  # a stroke crossing the line is kept
            r = end + 1
    return weak & ~cleared


def digit_mask(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept, strong): the digit's pixels (weak ink of kept pieces) and the strong ink."""
    from scipy.ndimage import label

    bins = np.minimum((ink * BINS).astype(np.int64), BINS - 1)
    t = max(otsu(np.bincount(bins.ravel(), minlength=BINS)), MIN_STRONG_BIN)
    strong, weak = bins > t, bins > t // 2
    if not strong.any():
        raise UserError("no digit found: the picture is (nearly) one grey level; give a picture "
                        "with a visible digit")
    pieces, n = label(_erase_lines(weak), structure=np.ones((3, 3), bool))  # 8-connected
    strength = np.bincount(pieces[strong], minlength=n + 1)
    strength[0] = 0
    if strength.max() == 0:
        raise UserError("no digit found: only ruled lines; give a picture with a visible digit")
    keep = SPECK * strength >= strength.max()
    keep[0] = False
    return keep[pieces], strong


def area_weights(n_in: int, scale: float, size: int) -> np.ndarray:
    """(size, n_in): how much of output pixel i source pixel j covers, once the n_in pixels
    are scaled by `scale` and centred in `size` pixels (pixel-area averaging).

    The digit's place is not rounded to whole pixels, so a bounding box one pixel larger
    moves the picture a little, never by a whole pixel.
    """
    w = np.zeros((size, n_in))
    offset = (size - n_in * scale) / 2
    for j in range(n_in):
        lo = offset + j * scale
        hi = lo + scale
        for i in range(max(0, int(np.floor(lo))), min(size, int(np.ceil(hi)))):
            w[i, j] = max(0.0, min(i + 1.0, hi) - max(float(i), lo))
    return w


def prepare(grey: np.ndarray, size: int = 16) -> np.ndarray:
    """The network's (1, size, size) input from grey levels in [0, 1] (steps 1-6 above)."""
    ink = ink_strength(grey)
    kept, strong = digit_mask(ink)
    rows, cols = np.nonzero(kept)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    typical = np.median(ink[kept & strong])
    value = np.where(kept, np.clip(ink / typical, 0.0, 1.0), 0.0)[r0:r1, c0:c1]
    scale = BOX.get(size, size) / max(value.shape)  # NC89 §2: scaled linearly, aspect kept
    out = area_weights(value.shape[0], scale, size) @ value \
        @ area_weights(value.shape[1], scale, size).T
    return (np.clip(out, 0.0, 1.0) * 2 - 1).astype(np.float32)[None]  # paper -1, ink up to +1
