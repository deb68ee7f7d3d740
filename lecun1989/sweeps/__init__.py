"""Sweeps over presets x seeds x `--set` lists: many runs, each a pure function of its config.

    configs = [apply_overrides(preset(p), [f"seed={s}"]) for p in LADDER for s in range(5)]
    run_sweep(configs, "sweeps/ladder", workers=2)   # skips runs already finished
    write_table("sweeps/ladder")                      # table.md, table.json, test_error.png
"""

from lecun1989.sweeps.grid import config_hash, expand_sets, run_name
from lecun1989.sweeps.run import SweepResult, is_finished, run_one, run_sweep
from lecun1989.sweeps.table import load_runs, summarise, write_table
from lecun1989.train.loop import parse_seeds

__all__ = ["config_hash", "expand_sets", "parse_seeds", "run_name", "SweepResult", "is_finished",
           "run_one", "run_sweep", "load_runs", "summarise", "write_table"]
