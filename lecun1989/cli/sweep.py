"""`lecun1989 sweep`: many runs over presets x seeds x `--set` lists, and their table.

    lecun1989 sweep --preset paper-sgd karpathy --seeds 0-4 --set train.lr=0.01,0.03 --workers 2
    lecun1989 sweep --table sweeps/paper+karpathy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lecun1989.cli.main import help_formatter
from lecun1989.cli.run import add_run_args, config_from_args
from lecun1989.config import PRESETS
from lecun1989.errors import UserError


def add_parsers(sub) -> None:
    """Register `sweep`."""
    p = sub.add_parser("sweep", help="many runs over presets x seeds x --set lists, in parallel",
                       conflict_handler="resolve", formatter_class=help_formatter(),
                       description="Train every preset x --set combination x seed into "
                       "SWEEP_DIR/<preset>-<config hash>/, skipping finished runs and resuming "
                       "stopped ones; then write SWEEP_DIR/table.md, table.json and "
                       "test_error.png (statistics over seeds). See docs/sweeps.md.")
    add_run_args(p)  # --data, --data-dir, --passes, --engine apply to every run
    p.add_argument("--preset", nargs="+", default=["paper"], metavar="PRESET",
                   help=f"one or more of: {', '.join(PRESETS)}")
    p.add_argument("--seeds", "--seed", dest="seeds", default="0",
                   help="seeds: 0-4 (five), 0,3,7 (three), 5 (seed 5 alone; a bare number is "
                        "one seed in every command) (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=V1,V2", help="a config field and its values (lists: a,b,c; "
                   "integer ranges: 1-3); every combination runs, e.g. --set train.lr=0.01,0.1")
    p.add_argument("--out", default=None,
                   help="the sweep folder (default sweeps/<presets>); runs go into "
                        "<preset>-<config hash>/ inside, finished ones are skipped")
    p.add_argument("--overwrite", action="store_true",
                   help="start every run afresh, finished ones too")
    p.add_argument("--workers", type=int, default=1,
                   help="runs at once: processes here, or the job array's parallelism")
    p.add_argument("--cluster", choices=("local", "slurm"), default=None,
                   help="run through submitit (pip install 'lecun1989[cluster]'): slurm job "
                        "arrays, or local subprocesses to try it")
    p.add_argument("--partition", default=None, help="SLURM partition (with --cluster slurm)")
    p.add_argument("--timeout-min", type=int, default=240, help="per-run time limit on SLURM")
    p.add_argument("--executor-param", action="append", default=[], metavar="KEY=VALUE",
                   help="any submitit parameter, e.g. slurm_account=abc or mem_gb=4")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--table", metavar="SWEEP_DIR", default=None,
                   help="only aggregate the runs of a sweep folder into table.md/json/png")
    p.set_defaults(func=cmd_sweep)


def sweep_configs(args) -> list:
    """A RunConfig per preset x --set combination x seed, built as `train` builds one."""
    from lecun1989.sweeps import expand_sets, parse_seeds

    combos, seeds = expand_sets(args.overrides), parse_seeds(args.seeds)
    return [config_from_args(argparse.Namespace(**{**vars(args), "preset": name,
                                                   "overrides": combo, "seed": seed,
                                                   "seeds": None}))
            for name in args.preset for combo in combos for seed in seeds]


def make_executor(args, folder: Path):
    """A submitit AutoExecutor for --cluster, one CPU per run."""
    try:
        import submitit
    except ImportError as e:
        raise UserError("--cluster needs submitit: pip install 'lecun1989[cluster]'") from e
    params = {"timeout_min": args.timeout_min, "cpus_per_task": 1, "name": "lecun1989-sweep",
              "slurm_partition": args.partition, "slurm_array_parallelism": args.workers}
    for item in args.executor_param:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--executor-param {item!r}: write it as key=value, e.g. mem_gb=4")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster)
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError, AssertionError) as e:
        raise UserError(f"--executor-param: {str(e).splitlines()[0]}") from e
    return executor


def cmd_sweep(args) -> int:
    from lecun1989.sweeps import is_finished, run_sweep, write_table
    from lecun1989.sweeps.grid import plan

    if args.table:
        return _print_table(write_table(args.table), args.table)
    out = Path(args.out or Path("sweeps") / "+".join(args.preset))
    configs = sweep_configs(args)
    if args.dry_run:
        for cfg, run_dir in plan(configs, out):
            state = "finished" if is_finished(run_dir) else "to run"
            print(f"{run_dir}  seed {cfg.seed}  ({state})")
        return 0
    executor = make_executor(args, out / "submitit") if args.cluster else None
    result = run_sweep(configs, out, workers=args.workers, executor=executor,
                       redo=args.overwrite, progress=not args.quiet)
    _print_table(write_table(out), out)
    for run_dir, why in result.failed.items():
        print(f"failed: {run_dir}: {why}")
    return 1 if result.failed else 0


def _print_table(table: dict, folder) -> int:
    from lecun1989.sweeps.table import metric_table

    print("\n".join(metric_table(table, "test", "error")))
    print(f"table: {Path(folder) / 'table.md'} (every metric), table.json, test_error.png")
    return 0
