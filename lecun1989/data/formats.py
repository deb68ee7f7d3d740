"""Parsers of the USPS text formats: ESL (label then 256 pixels a line), LIBSVM (sparse, 1..10)."""

from __future__ import annotations

import io

import numpy as np

from lecun1989.data.checks import one_line
from lecun1989.data.files import text_lines
from lecun1989.errors import DataError

PIXELS = 256


def parse_esl(data: bytes, name: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels float64 (N, 256), labels float64 (N,)) from ESL text; numbers unchecked."""
    lines = text_lines(data, name, fix)
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines)), dtype=np.float64, comments=None,
                           ndmin=2)
    except ValueError:
        table = None
    if table is None or table.shape != (len(lines), PIXELS + 1):
        _raise_bad_esl_line(lines, name, fix)
    return table[:, 1:], table[:, 0]


def _raise_bad_esl_line(lines: list[str], name: str, fix: str) -> None:
    """Name the first ESL line that has the wrong count of numbers or a non-number."""
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != PIXELS + 1:
            raise DataError(one_line(f"{name} line {i}: {len(parts)} numbers, expected "
                                     f"{PIXELS + 1} (a label and {PIXELS} pixels); {fix}"))
        for part in parts:
            try:
                float(part)
            except ValueError:
                raise DataError(one_line(f"{name} line {i}: {part[:20]!r} is not a number; "
                                         f"{fix}")) from None
    raise DataError(one_line(f"{name}: numbers that cannot be read; {fix}"))


def parse_libsvm(data: bytes, name: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels float64 (N, 256), digit labels float64 (N,)) from LIBSVM text; absent pixels: 0."""
    lines = text_lines(data, name, fix)
    pixels = np.zeros((len(lines), PIXELS))
    labels = np.empty(len(lines))
    for i, line in enumerate(lines):
        parts = line.split()
        where = f"{name} line {i + 1}"
        label = _number(parts[0] if parts else "", where, fix)
        if label != round(label) or not 1 <= label <= 10:
            raise DataError(one_line(f"{where}: label {label:g} is not a class 1..10 (LIBSVM "
                                     f"numbering of the digits 0..9); {fix}"))
        labels[i] = label - 1
        seen: set[int] = set()
        for item in parts[1:]:
            index, colon, value = item.partition(":")
            if not colon or not index.isdigit():
                raise DataError(one_line(f"{where}: {item[:20]!r} is not index:value; {fix}"))
            j = int(index)
            if not 1 <= j <= PIXELS or j in seen:
                problem = "repeated" if j in seen else f"outside 1..{PIXELS}"
                raise DataError(one_line(f"{where}: feature index {j} is {problem}; {fix}"))
            seen.add(j)
            pixels[i, j - 1] = _number(value, where, fix)
    return pixels, labels


def _number(text: str, where: str, fix: str) -> float:
    """A float, or a DataError naming the place."""
    try:
        return float(text)
    except ValueError:
        raise DataError(one_line(f"{where}: {text[:20]!r} is not a number; {fix}")) from None
