"""H1 -> H2 connection tables: which H1 maps each of the 12 H2 maps sees.

NC89 §3: each H2 map takes input from 8 of the 12 H1 maps, "chosen according to a
scheme that will not be described here". The tables below are guesses; a table is
an int array of shape (12, k): row j lists the H1 maps H2 map j sees.
"""

import numpy as np

from lecun1989.config import MAPS, TABLE_NAMES, check_table


def _karpathy() -> list[list[int]]:
    """Karpathy's blocks: H2 0-3 see H1 0-7, 4-7 see 4-11, 8-11 see 0-3 and 8-11."""
    blocks = [list(range(0, 8)), list(range(4, 12)), list(range(0, 4)) + list(range(8, 12))]
    return [blocks[j // 4] for j in range(MAPS)]


def _balanced() -> list[list[int]]:
    """A cyclic table: H2 map j sees the 8 H1 maps j..j+7 (mod 12); each H1 map feeds 8."""
    return [sorted((j + i) % MAPS for i in range(8)) for j in range(MAPS)]


def _full() -> list[list[int]]:
    """Every H2 map sees all 12 H1 maps (the original notebook)."""
    return [list(range(MAPS)) for _ in range(MAPS)]


TABLES = {"karpathy": _karpathy, "balanced": _balanced, "full": _full}
assert tuple(TABLES) == TABLE_NAMES, "config.TABLE_NAMES names the tables built here"


def connection_table(spec) -> np.ndarray:
    """The (12, k) table for a name in TABLES or an explicit list of 12 lists of k H1 maps
    (checked by config.check_table: a one-line ConfigError)."""
    check_table(spec)
    rows = TABLES[spec]() if isinstance(spec, str) else spec
    return np.array([list(r) for r in rows], dtype=np.int64)


def table_mask(table: np.ndarray) -> np.ndarray:
    """The (12 H2, 12 H1) 0/1 matrix: mask[j, i] = 1 when H2 map j sees H1 map i."""
    mask = np.zeros((MAPS, MAPS), dtype=np.int64)
    for j, row in enumerate(table):
        mask[j, row] = 1
    return mask
