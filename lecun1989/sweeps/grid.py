"""What a sweep runs: value lists and ranges, their product, and each run's folder name.

A run's folder is <preset>-<hash>, the hash over the canonical JSON of its RunConfig,
so the same config always lands in the same folder and a different one never does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

from lecun1989.config import LADDER, RunConfig, apply_overrides, preset
from lecun1989.errors import ConfigError

HASH_CHARS = 10
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def split_values(text: str) -> list[str]:
    """'0.01,0.03' -> ['0.01', '0.03']; '0-4' -> ['0', ..., '4']; commas inside [] stay put."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    out = []
    for item in (s.strip() for s in items):
        m = _RANGE.match(item)
        if m and int(m[2]) < int(m[1]):
            raise ConfigError(f"range {item!r} runs backwards; write it low-high, e.g. 0-4")
        if not item:
            raise ConfigError(f"empty value in {text!r}; separate values with single commas")
        out += [str(n) for n in range(int(m[1]), int(m[2]) + 1)] if m else [item]
    return out


def expand_sets(items: list[str]) -> list[list[str]]:
    """['lr=0.01,0.1', 'table=karpathy,full'] -> every combination as a list of key=value."""
    axes = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write it as key=value[,value...], "
                              "e.g. --set train.lr=0.01,0.03")
        key, values = item.split("=", 1)
        axes.append([f"{key.strip()}={v}" for v in split_values(values)])
    return [list(combo) for combo in itertools.product(*axes)]


def config_hash(cfg: RunConfig) -> str:
    """A short hash of the canonical JSON of cfg.to_dict()."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def run_name(cfg: RunConfig) -> str:
    """The run's folder name inside the sweep folder: <preset>-<hash>."""
    return f"{cfg.preset}-{config_hash(cfg)}"


def plan(configs: list[RunConfig], sweep_dir: str | Path) -> list[tuple[RunConfig, Path]]:
    """(config, run folder) for each distinct config, in the order given."""
    runs = {}
    for cfg in configs:
        runs.setdefault(run_name(cfg), cfg)
    if not runs:
        raise ConfigError("the sweep is empty; give at least one --preset and one seed")
    return [(cfg, Path(sweep_dir) / name) for name, cfg in runs.items()]


def ladder_configs(seeds: list[int], passes_fraction: float = 1.0,
                   overrides: list[str] = ()) -> list[RunConfig]:
    """The modern ablation ladder (config.LADDER) x seeds; passes scaled by passes_fraction."""
    if not 0 < passes_fraction <= 1:
        raise ConfigError(f"--passes-fraction {passes_fraction}: give a number in (0, 1]")
    configs = []
    for name in LADDER:
        passes = max(1, round(preset(name).train.passes * passes_fraction))
        configs += [apply_overrides(preset(name), [*overrides, f"train.passes={passes}",
                                                   f"seed={seed}"]) for seed in seeds]
    return configs
