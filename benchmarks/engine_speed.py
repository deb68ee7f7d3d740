"""Engine speed: the reference (PyTorch eager) and the fast (Numba) engine, per step and per run.

    .venv/bin/python benchmarks/engine_speed.py              # a table
    .venv/bin/python benchmarks/engine_speed.py --json       # one JSON object
    .venv/bin/python benchmarks/engine_speed.py --quick      # fewer repetitions, no compile

Per-step figures use 1 thread (torch and the fast engine), the paper preset, and report the
median of several repetitions of CPU time (process time: on a shared machine it counts only
this process). Also: the 23-pass reproduction after compilation (167,693 steps and 23
evaluations of both sets, wall time), the first-ever compile (an empty numba cache, in a
fresh process) and a warm start, SDLM's cost per step against SGD, K=64 models on 2 threads
(the fast engine and the lanes engine, engines/lanes.py), the lanes engine's first compile,
and peak memory after 2 and after 10 passes. Digits: USPS when --data-dir holds it, else
random arrays of the same shape (the timings do not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
USPS = ROOT.parent / "shared" / "data" / "usps"


def digits(data_dir: str | None):
    """USPS (7291/2007) if available, else random [-1, 1] arrays of the same shapes."""
    from lecun1989.train.loop import RunData

    folder = Path(data_dir) if data_dir else USPS
    if (folder / "zip.train.gz").is_file():
        from lecun1989 import data

        d = data.load("usps", data_dir=str(folder))
        return RunData("usps", d.train_images, d.train_labels, d.test_images, d.test_labels)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (9298, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 9298)
    return RunData("random", x[:7291], y[:7291], x[7291:], y[7291:])


def config(name: str, *overrides):
    """A preset ("paper": SDLM, "paper-sgd": plain SGD) with --set style overrides."""
    from lecun1989.config import apply_overrides, preset

    return apply_overrides(preset(name), list(overrides))


def cpu_us_per_step(engine, data, steps: int, chunk: int) -> float:
    """CPU microseconds per step of one repetition: `steps` steps, chunk steps per
    train_steps call."""
    x, y = data.train_images, data.train_labels
    t = time.process_time()
    for start in range(0, steps, chunk):
        engine.train_steps(x, y, start, min(start + chunk, steps), 1e-4)
    return (time.process_time() - t) / steps * 1e6


def per_step(data, reps: int) -> dict:
    """Reference and fast engine, float32 and float64, SGD and SDLM: CPU us per step, the
    median over reps (and the least: on a shared machine other tenants only ever slow a
    repetition down, so the least is the code's own speed, the median what a user may
    see). The engines take turns, one repetition each, so that a neighbour's busy second
    slows all of them alike rather than all the repetitions of one."""
    import torch

    from lecun1989.engines.fast import FastEngine
    from lecun1989.engines.reference import ReferenceEngine
    from lecun1989.model import init_params

    torch.set_num_threads(1)
    engines = {}  # name: (engine, steps per repetition)
    for dtype in ("float32", "float64"):
        cfg = config("paper-sgd", f"model.dtype={dtype}")
        engines[f"reference_{dtype}"] = ReferenceEngine([cfg], [init_params(cfg.model, 0)]), 100
        engines[f"fast_{dtype}"] = FastEngine([cfg], [init_params(cfg.model, 0)], threads=1), 2000
    cfg = config("paper", "model.dtype=float32")
    sdlm = FastEngine([cfg], [init_params(cfg.model, 0)], threads=1)
    sdlm.begin_pass(0, data.train_images, data.train_labels)
    engines["fast_sdlm_float32"] = sdlm, 2000
    for engine, _ in engines.values():  # warm (compiles the fast engine)
        cpu_us_per_step(engine, data, 10, 10)
    times = {name: [] for name in [*engines, "sdlm_estimate_seconds"]}
    for _ in range(reps):
        for name, (engine, steps) in engines.items():
            times[name].append(cpu_us_per_step(engine, data, steps, 100))
        t = time.process_time()
        sdlm.begin_pass(0, data.train_images, data.train_labels)  # on sdlm_samples patterns
        times["sdlm_estimate_seconds"].append(time.process_time() - t)
    out = {name: statistics.median(v) for name, v in times.items()}
    out["fast_float32_least"] = min(times["fast_float32"])
    return out


def reproduction_seconds(data, name: str) -> tuple[float, float, dict]:
    """Wall and CPU seconds of `fit` with preset `name` (fast engine, its 23 passes and
    evaluations, float32, all cores) after compilation; its final metrics."""
    from lecun1989.train.loop import fit

    cfg = config(name, "engine=fast")
    fit(config(name, "engine=fast", "train.passes=1"), _head(data, 200), progress=False,
        log=lambda s: None)  # compiles
    t, c = time.perf_counter(), time.process_time()
    run = fit(cfg, data, progress=False, log=lambda s: None)
    return time.perf_counter() - t, time.process_time() - c, run.summary["final"]


def _head(data, n: int):
    from lecun1989.train.loop import RunData

    return RunData(data.name, data.train_images[:n], data.train_labels[:n],
                   data.test_images[:n], data.test_labels[:n])


def many_models(data, reps: int, k: int = 64, threads: int = 2, steps: int = 200) -> dict:
    """Model-samples per second (wall) of K models (seeds 0..K-1) on `threads` threads, the
    median over reps of `steps` steps each: the fast engine (one model per core at a time,
    float32 SGD) and the lanes engine (the models in SIMD lanes, blocks of LANES on the
    threads) with float32 SGD, float64 SGD and float32 SDLM. The engines take turns, one
    repetition each. Also the lanes' CPU time per model-step (both threads' together: what a
    loaded machine does not inflate as much as the wall time)."""
    from lecun1989.engines.fast import FastEngine
    from lecun1989.engines.lanes import LanesEngine
    from lecun1989.model import init_params

    def cfgs(name, *overrides):
        return [config(name, f"seed={s}", *overrides) for s in range(k)]

    def params(cs):
        return [init_params(c.model, c.seed) for c in cs]

    x, y = data.train_images, data.train_labels
    sgd, sgd64, sdlm = (cfgs("paper-sgd"), cfgs("paper-sgd", "model.dtype=float64"),
                        cfgs("paper"))
    engines = {"models64": FastEngine(sgd, params(sgd), threads),
               "lanes": LanesEngine(sgd, params(sgd), threads),
               "lanes_float64": LanesEngine(sgd64, params(sgd64), threads),
               "lanes_sdlm": LanesEngine(sdlm, params(sdlm), threads)}
    for engine in engines.values():  # compiles; SDLM's estimate
        engine.begin_pass(0, x, y)
        engine.train_steps(x, y, 0, 10, 1e-4)
    rates = {name: [] for name in engines}
    cpu = {name: [] for name in engines}
    for _ in range(reps):
        for name, engine in engines.items():
            t, c = time.perf_counter(), time.process_time()
            for start in range(0, steps, 100):
                engine.train_steps(x, y, start, start + 100, 1e-4)
            rates[name].append(k * steps / (time.perf_counter() - t))
            cpu[name].append((time.process_time() - c) / (k * steps) * 1e6)
    out = {f"{name}_samples_per_s": statistics.median(v) for name, v in rates.items()}
    out.update({f"{name}_cpu_us_per_model_step": statistics.median(v)
                for name, v in cpu.items() if name.startswith("lanes")})
    out["lanes_over_models64"] = out["lanes_samples_per_s"] / out["models64_samples_per_s"]
    return out


def predict_rates(data, reps: int, ks=(5, 20, 64), threads: int = 2) -> dict:
    """Model-patterns per second (wall) of the lanes engine's `predict` on the test set for
    K models (`paper`, float32): K = 5 and 20 leave lanes of a block empty in training, not
    in predict (LANES patterns of one model at a time); K = 64 fills its blocks. Median of
    reps calls."""
    from lecun1989.engines.lanes import LanesEngine
    from lecun1989.model import init_params

    images, out = data.test_images, {}
    for k in ks:
        cfgs = [config("paper", f"seed={s}") for s in range(k)]
        engine = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs], threads)
        engine.predict(images[:1])  # compiles, or loads the cache
        seconds = []
        for _ in range(reps):
            t = time.perf_counter()
            engine.predict(images)
            seconds.append(time.perf_counter() - t)
        out[f"lanes_predict_k{k}_samples_per_s"] = k * len(images) / statistics.median(seconds)
    return out


CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from lecun1989.config import preset
from lecun1989.engines.fast import FastEngine
from lecun1989.model import init_params
import numpy as np
t1 = time.perf_counter()
passes, name = int(sys.argv[1]), sys.argv[2]
cfg = preset(name)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (7291, 1, 16, 16)).astype(np.float32)
y = rng.integers(0, 10, 7291)
engine = FastEngine([cfg], [init_params(cfg.model, 0)])
for p in range(passes):
    engine.begin_pass(p, x, y)
    for s in range(0, len(y) if passes > 1 else 10, 100):
        engine.train_steps(x, y, s, min(s + 100, len(y)), 1e-4)
    engine.predict(x)
t2 = time.perf_counter()
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import_s": t1 - t0, "ready_s": t2 - t1, "cpu_s": use.ru_utime + use.ru_stime,
                  "peak_rss_mb": use.ru_maxrss / 1024}))
"""


LANES_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from lecun1989.config import preset
from lecun1989.engines.lanes import LanesEngine
from lecun1989.model import init_params
import numpy as np
t1 = time.perf_counter()
cfgs = [preset(sys.argv[2]) for _ in range(2)]
x = np.random.default_rng(0).uniform(-1, 1, (600, 1, 16, 16)).astype(np.float32)
y = np.zeros(600, np.int64)
engine = LanesEngine(cfgs, [init_params(c.model, s) for s, c in enumerate(cfgs)])
engine.begin_pass(0, x, y)
engine.train_steps(x, y, 0, 10, 1e-4)
engine.predict(x[:10])
print(json.dumps({"import_s": t1 - t0, "ready_s": time.perf_counter() - t1}))
"""


def child(passes: int, name: str, cache_dir: str, code: str = CHILD) -> dict:
    """Run `code` in a fresh interpreter with numba's cache in cache_dir; its JSON line."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(passes), name], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_and_memory() -> dict:
    """First-ever compile (empty cache), warm start, and peak RSS after 2 and 10 passes."""
    with tempfile.TemporaryDirectory() as cache:
        first = child(1, "paper", cache)  # compiles train, predict and SDLM's estimate
        warm = child(1, "paper", cache)
        two, ten = child(2, "paper", cache), child(10, "paper", cache)
        lanes_first = child(1, "paper", cache, LANES_CHILD)  # train, SDLM's estimate, predict
        lanes_warm = child(1, "paper", cache, LANES_CHILD)
    return {"first_compile_s": first["ready_s"], "warm_start_s": warm["ready_s"],
            "first_compile_process_cpu_s": first["cpu_s"], "warm_process_cpu_s": warm["cpu_s"],
            "import_s": warm["import_s"], "peak_rss_mb_2_passes": two["peak_rss_mb"],
            "peak_rss_mb_10_passes": ten["peak_rss_mb"],
            "lanes_first_compile_s": lanes_first["ready_s"],
            "lanes_warm_start_s": lanes_warm["ready_s"]}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.processor())
    from lecun1989.train.loop import versions

    v = versions()
    return {"cpu": model, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "versions": {k: v[k] for k in ("python", "torch", "numpy", "numba", "llvmlite")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="3 repetitions; skip the compile, "
                   "memory and 23-pass measurements")
    p.add_argument("--reps", type=int, default=7, help="repetitions of each per-step figure")
    p.add_argument("--data-dir", default=None, help="folder with zip.train.gz, zip.test.gz")
    args = p.parse_args()
    import numba

    numba.set_num_threads(1)
    data = digits(args.data_dir)
    r = {"machine": machine(), "data": data.name}
    reps = 3 if args.quick else args.reps
    steps = per_step(data, reps)
    r.update({"reference_us_per_step": steps["reference_float32"],
              "fast_us_per_step": steps["fast_float32"],
              "fast_us_per_step_least": steps["fast_float32_least"],
              "ratio": steps["reference_float32"] / steps["fast_float32"],
              "reference_float64_us_per_step": steps["reference_float64"],
              "fast_float64_us_per_step": steps["fast_float64"],
              "ratio_float64": steps["reference_float64"] / steps["fast_float64"],
              "fast_sdlm_us_per_step": steps["fast_sdlm_float32"],
              "sdlm_over_sgd_per_step": steps["fast_sdlm_float32"] / steps["fast_float32"],
              "sdlm_estimate_seconds": steps["sdlm_estimate_seconds"]})
    n = len(data.train_labels)
    r["sdlm_over_sgd_per_pass"] = (steps["fast_sdlm_float32"] * n / 1e6
                                   + steps["sdlm_estimate_seconds"]) / (
                                       steps["fast_float32"] * n / 1e6)
    r.update(many_models(data, reps))
    r.update(predict_rates(data, reps))
    if not args.quick:
        wall, cpu, final = reproduction_seconds(data, "paper")
        r.update(reproduction_23_passes_s=wall, reproduction_23_passes_cpu_s=cpu,
                 reproduction_final_test_error=final["test"]["error"])
        wall, cpu, _ = reproduction_seconds(data, "paper-sgd")
        r.update(reproduction_23_passes_sgd_s=wall, reproduction_23_passes_sgd_cpu_s=cpu)
        r.update(compile_and_memory())
    r["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps(r))
        return 0
    m = r["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]:.1f}, "
          f"{m['date']}, data {r['data']}")
    for key, value in r.items():
        if key not in ("machine", "data"):
            print(f"  {key:34s} {value:12.4g}" if isinstance(value, float) else
                  f"  {key:34s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
