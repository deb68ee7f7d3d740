"""Buffers for the compiled engines, aligned to 64 bytes (a cache line, an AVX-512 vector)."""

from __future__ import annotations

import numpy as np


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
