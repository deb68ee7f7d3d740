"""Sweep throughput: 5 seeds x the three 1989 presets, in one process versus a process pool.

    .venv/bin/python benchmarks/sweep_throughput.py --repeats 3

Each measurement is the `lecun1989 sweep` command itself, timed from outside in a fresh
folder (interpreter start, data loading and worker start included). Few passes on few
digits keep it affordable: the figures are for the sweep machinery, not for training.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lecun1989.train.loop import versions


def command(out: Path, workers: int, args) -> list[str]:
    return [sys.executable, "-m", "lecun1989", "sweep", "--preset", *args.presets,
            "--seeds", args.seeds, "--data", args.data, "--passes", str(args.passes),
            "--set", f"data.limit_train={args.limit_train}", "--engine", args.engine,
            "--workers", str(workers),
            "--out", str(out), "--quiet"]


def measure(workers: int, args) -> dict:
    """Run the sweep once into a fresh folder; wall time and what the runs report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        t0 = time.perf_counter()
        subprocess.run(command(out, workers, args), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        table = json.loads((out / "table.json").read_text())
    runs = table["runs"]
    samples = sum(len(g["seeds"]) * g["data"]["train"] * g["config"]["train.passes"]
                  for g in table["groups"])
    train_s = sum(g["stats"]["seconds"]["mean"] * len(g["seeds"]) for g in table["groups"])
    return {"workers": workers, "runs": runs, "wall_s": wall, "runs_per_min": 60 * runs / wall,
            "samples_per_s": samples / wall, "training_s": train_s}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Model name")), platform.processor())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["paper", "karpathy", "notebook"])
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--data", default="mnist-5k", help="mnist-5k: the notebook preset is 28x28")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--limit-train", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--engine", default="reference", help="reference: the same engine for all")
    p.add_argument("--repeats", type=int, default=1, help="alternate the two modes this often")
    args = p.parse_args()
    results = {1: [], args.workers: []}
    for _ in range(args.repeats):
        for workers in results:
            results[workers].append(measure(workers, args))
            print(json.dumps(results[workers][-1]), file=sys.stderr)
    median = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in
              results.items()}
    one, pool = median[1], median[args.workers]
    print(f"machine: {lscpu_model()}; date {time.strftime('%Y-%m-%d')}; "
          + ", ".join(f"{k} {v}" for k, v in versions().items()
                      if k in ("python", "torch", "numpy", "lecun1989")))
    print("command: " + shlex.join(command(Path("OUT"), args.workers, args)[2:]))
    print(f"median of {args.repeats} alternating repeats:")
    print("| mode | wall (s) | runs/min | model-samples/s | training s (sum over runs) |")
    print("|---|---:|---:|---:|---:|")
    for name, m in (("one process (--workers 1)", one),
                    (f"process pool (--workers {args.workers})", pool)):
        print(f"| {name} | {m['wall_s']:.1f} | {m['runs_per_min']:.1f} | "
              f"{m['samples_per_s']:.0f} | {m['training_s']:.1f} |")
    ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(results[1], results[args.workers],
                                                        strict=True)]
    print(f"speed-up of the pool (one-process wall / pool wall, per repeat): "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
