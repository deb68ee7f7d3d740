"""Reading run folders: one model's (config.json, summary.json, ...) or a K-model folder's
seeds (seeds.json naming seed-<s>/ folders). The one reader that report, plot, evaluate,
predict and sweeps use to tell the two apart."""

from __future__ import annotations

import json
from pathlib import Path

from lecun1989.errors import CheckpointError
from lecun1989.train.rundir import SEEDS


def seed_folders(path: Path) -> dict[int, Path] | None:
    """{seed: folder} of a K-model run folder, or None for anything else (one run's folder,
    a file). A seeds.json that is unreadable or names missing folders is a CheckpointError."""
    path = Path(path)
    marker = path / SEEDS
    if not marker.is_file():
        return None
    try:
        layout = json.loads(marker.read_text())
        folders = {int(s): path / str(d) for s, d in zip(layout["seeds"], layout["dirs"],
                                                          strict=True)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{marker}: unreadable ({e}); the folder is damaged") from None
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        raise CheckpointError(f"{marker}: names {', '.join(missing)}, which do not exist; "
                              "the folder is damaged or was moved in part")
    return folders


def run_folders(paths: list[Path]) -> list[Path]:
    """Every one-model run folder among `paths`, a K-model folder giving its seeds' folders."""
    out = []
    for p in paths:
        seeds = seed_folders(Path(p))
        out.extend(seeds.values() if seeds is not None else [Path(p)])
    return out
