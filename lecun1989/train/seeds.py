"""Several seeds of one configuration: the seed grammar, the folder of a K-model run
(seeds.json naming one run folder seed-<s>/ per seed), its summary and its resumption."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError, ConfigError
from lecun1989.stats import aggregate
from lecun1989.train import checkpoint, rundir
from lecun1989.train.runs import SEEDS

# SEEDS (seeds.json) marks a K-model folder: {"seeds": [...], "dirs": [...], "config": ...}
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_SEEDS = 10_000  # models in one run


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """Seeds from "0-4", "0,3,7", "2-3,9" or one number (that one seed); distinct, in order."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.replace(" ", "").split(","):
            lo, dash, hi = part.partition("-")
            try:
                first, last = int(lo), int(hi) if dash else int(lo)
            except ValueError:
                raise ConfigError(f"--seeds {text}: {part!r} is not a seed; write seeds as "
                                  "0-4, 0,3,7 or 5 (one seed)") from None
            if last < first:
                raise ConfigError(f"--seeds {text}: the range {part} runs backwards; write "
                                f"{last}-{first}")
            seeds.extend(range(first, last + 1))
            if len(seeds) > MAX_SEEDS:
                break
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or \
            max(seeds) > MAX_SEED or len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds {text}: give up to {MAX_SEEDS} distinct seeds from 0 to "
                        f"{MAX_SEED}, e.g. 0-4 or 0,3,7")
    return seeds


def seed_dir(seed: int) -> str:
    """The folder of seed s inside a K-model run folder."""
    return f"seed-{seed}"


def seeds_summary(summaries: list[dict]) -> dict:
    """summary.json of a K-model folder: the setup, each seed's final metrics, the aggregate."""
    first = summaries[0]
    return {"preset": first["preset"], "seeds": [s["seed"] for s in summaries],
            "data": first["data"], "engine": first["engine"],
            "seconds": max(s["seconds"] for s in summaries),
            "mse_convention": first["mse_convention"],
            "runs": [{"seed": s["seed"], "dir": seed_dir(s["seed"]), "final": s["final"]}
                     for s in summaries],
            "aggregate": aggregate(summaries)}


def resume_seeds(root: Path) -> list[int]:
    """The seeds of an interrupted K-model run, from its seeds.json."""
    try:
        seeds = json.loads((root / SEEDS).read_text())["seeds"]
        return parse_seeds([int(s) for s in seeds])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{root / SEEDS}: unreadable ({e}); the folder is damaged: "
                              "start the run again") from None


def resume_config(out: str | os.PathLike) -> RunConfig:
    """The config an interrupted run (one model, or K seeds) was started with."""
    out = Path(out)
    if (out / SEEDS).is_file():
        first = resume_seeds(out)[0]
        return checkpoint.load(checkpoint_path(out / seed_dir(first)))[0]
    return checkpoint.load(checkpoint_path(out))[0]


def checkpoint_path(out: Path) -> Path:
    path = out / rundir.CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{out}: no {rundir.CHECKPOINT} in it; pass the folder of an "
                              "interrupted run")
    return path


def resolve_out(out: str | os.PathLike | None, cfg: RunConfig, seeds: list[int] | None = None
                ) -> Path:
    """The run folder: --out, or a fresh timestamped one under runs/."""
    if out:
        return Path(out)
    if seeds is None:
        return rundir.default_out(cfg.preset, cfg.data.name, cfg.seed)
    label = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else \
        f"{len(seeds)}seeds"
    return rundir.default_out(cfg.preset, cfg.data.name, label)
