"""The modern ablation ladder (karpathy/lecun1989-repro's modern.py) x seeds: table and plot.

    .venv/bin/python benchmarks/ladder.py --data-dir /work/shared/data/usps --seeds 0-4
    .venv/bin/python benchmarks/ladder.py --seeds 0 --passes-fraction 0.1   # a quick look
    .venv/bin/python benchmarks/ladder.py --data-dir ../shared/data/usps --publish studies/results

Each rung adds one change to the one before (lecun1989/config.py: LADDER). Runs go to
sweeps/ladder[-passesF]/ as a sweep (finished runs are skipped when started again);
table.md, table.json and test_error.png are written there. --passes-fraction F < 1 trains
each rung round(F * its passes) passes: the folder name and table say so.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from lecun1989.sweeps import parse_seeds, run_sweep, write_table
from lecun1989.sweeps.grid import ladder_configs
from lecun1989.sweeps.table import metric_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="usps", help="usps | mnist | mnist-5k | digits")
    p.add_argument("--data-dir", default=None, help="folder with zip.train.gz, zip.test.gz")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--passes-fraction", type=float, default=1.0,
                   help="train each rung this fraction of its passes (default 1: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--engine", default="auto", choices=("auto", "reference", "fast"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed override for every rung")
    p.add_argument("--out", default=None, help="default: sweeps/ladder[-passesF]")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="also copy table.md, table.json, test_error.png to DIR/ladder.* "
                        "(RESULTS.md cites studies/results)")
    args = p.parse_args()
    overrides = [f"data.name={args.data}", f"engine={args.engine}", *args.overrides]
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    configs = ladder_configs(parse_seeds(args.seeds), args.passes_fraction, overrides)
    scaled = args.passes_fraction != 1
    out = Path(args.out or "sweeps/ladder" + (f"-passes{args.passes_fraction:g}" if scaled
                                               else ""))
    result = run_sweep(configs, out, workers=args.workers)
    table = write_table(out)
    if scaled:
        passes = "/".join(str(c.train.passes) for c in configs[::len(parse_seeds(args.seeds))])
        note = (f"\nNOTE: fewer passes than the ladder's 23/23/46/60/80: {passes} "
                f"(--passes-fraction {args.passes_fraction:g}).\n")
        (out / "table.md").write_text((out / "table.md").read_text() + note)
        print(note.strip())
    print("\n".join(metric_table(table, "test", "error")))
    print(f"table: {out / 'table.md'}, {out / 'table.json'}, {out / 'test_error.png'}")
    if args.publish:
        dest = Path(args.publish)
        dest.mkdir(parents=True, exist_ok=True)
        for name, target in (("table.md", "ladder.md"), ("table.json", "ladder.json"),
                             ("test_error.png", "ladder_test_error.png")):
            shutil.copyfile(out / name, dest / target)
        print(f"published to {dest}/ladder.*")
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
