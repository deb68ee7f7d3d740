"""CPU microseconds per 16-lane block step of the lanes engine, one thread (BENCHMARKS.md).

    .venv/bin/python benchmarks/lanes_step.py --data-dir ../shared/data/usps

Seeds 0-15 of `paper` (SDLM) and `paper-sgd`, float32, on the USPS training digits
(engine_speed.py's `digits` and `config`): 9 runs of 500 steps each; prints the least and
the median. On a machine whose speed swings (a
shared host), the least of several runs is what compares two versions of the kernels: run
this in two checkouts, taking turns.
"""

from __future__ import annotations

import argparse
import statistics
import time

from engine_speed import config, digits  # (this folder: the same presets and digits)

from lecun1989.engines.lanes import LanesEngine
from lecun1989.model import init_params


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with zip.train.gz, zip.test.gz "
                   "(default: ../shared/data/usps, else random digits)")
    p.add_argument("--runs", type=int, default=9, help="runs of --steps steps per preset")
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args()
    data = digits(args.data_dir)
    x, y = data.train_images, data.train_labels
    for name in ("paper", "paper-sgd"):
        cfg = config(name)
        cfgs = [config(name, f"seed={s}") for s in range(16)]
        engine = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs], threads=1)
        engine.begin_pass(0, x, y)
        engine.train_steps(x, y, 0, 10, cfg.train.lr)  # (loads the kernels)
        us = []
        for r in range(args.runs):
            start = 100 + r * args.steps % (len(y) - args.steps - 100)
            t = time.process_time()
            engine.train_steps(x, y, start, start + args.steps, cfg.train.lr)
            us.append((time.process_time() - t) / args.steps * 1e6)
        print(f"{name:10s} least {min(us):6.1f} us  median {statistics.median(us):6.1f} us "
              f"per 16-lane step ({args.runs} x {args.steps} steps, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
