"""Arrays for the compiled engines: buffers aligned to 64 bytes (a cache line, an AVX-512
vector), images in the layout the kernels read."""

from __future__ import annotations

import numpy as np

from lecun1989.errors import DataError


def aligned_zeros(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """Zeros starting at a multiple of `align` bytes (numpy only promises 16): the kernels'
    regions are laid out 64-byte aligned from there (_kernels._after); with numpy's own
    alignment the speed depended on where malloc put the buffer (BENCHMARKS.md)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(int(np.prod(shape)) * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    out = aligned_zeros(a.shape, a.dtype)
    out[...] = a
    return out


def digit_images(images: np.ndarray, engine: str) -> np.ndarray:
    """Images as the compiled engines take them: (N, 1, 16, 16), C-ordered; float32 and
    float64 kept (the kernels cast per pixel), anything else made float32."""
    images = np.ascontiguousarray(images)
    if images.ndim != 4 or images.shape[1:] != (1, 16, 16):
        raise DataError(f"the {engine} engine takes images of shape (N, 1, 16, 16), got "
                        f"{images.shape}; use 16x16 digits (model.input_size=16)")
    if images.dtype not in (np.float32, np.float64):
        images = images.astype(np.float32)
    return images
