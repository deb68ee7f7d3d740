"""Running a sweep: in this process, in a process pool, or on submitit (SLURM or local).

Every run calls the public driver (load_run_data, fit) in its own folder. A run is
finished when its summary.json exists: a sweep started again skips those, resumes the
stopped ones from their last checkpoint (fit(..., resume=True)), and starts the rest afresh.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lecun1989 import files
from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError, Interrupted, UserError
from lecun1989.sweeps.grid import plan
from lecun1989.train import rundir

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
ERROR, LOG = "error.txt", "log.txt"  # in each run folder: why it failed; what fit printed
_DATA: dict[str, object] = {}  # RunData by data config, kept for the life of a worker


@dataclass
class SweepResult:
    """What a sweep call did: folders run, skipped as finished, and failed (folder -> why)."""

    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its summary.json exists (fit writes it last, atomically)."""
    return (Path(run_dir) / rundir.SUMMARY).is_file()


def one_thread() -> None:
    """Keep a worker on one core: torch, OpenMP, MKL and numba threads."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    set_threads(1)


def set_threads(n: int) -> int:
    """Set torch's (and numba's, if loaded) thread count; return torch's previous one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(min(n, sys.modules["numba"].config.NUMBA_NUM_THREADS))
    return before


@contextmanager
def single_threaded():
    """One thread inside the block (tiny per-sample ops only lose from a second thread)."""
    before = set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


def _data_key(cfg: RunConfig) -> str:
    return json.dumps([cfg.data.__dict__, cfg.model.input_size], sort_keys=True)


def _run_data(cfg: RunConfig):
    """load_run_data(cfg), loaded once per worker for each data configuration."""
    from lecun1989.train.loop import load_run_data

    key = _data_key(cfg)
    if key not in _DATA:
        _DATA[key] = load_run_data(cfg)
    data = _DATA[key]
    cfg.data.name = data.name  # what load_run_data does to "auto"
    return data


def run_one(config: dict, out: str, resume: bool = True) -> dict:
    """Train one config into `out` with the public driver (resuming a stopped run there
    unless resume=False); return its training seconds and final test metrics."""
    from lecun1989.train.loop import fit

    out = files.make_folder(out)
    (out / ERROR).unlink(missing_ok=True)
    try:
        cfg = RunConfig.from_dict(config)
        data = _run_data(cfg)
        with open(out / LOG, "a") as f:
            def log(line):
                print(line, file=f, flush=True)

            run = None
            if resume and (out / rundir.CHECKPOINT).is_file():
                try:
                    run = fit(cfg, data, out, resume=True, progress=False, log=log)
                except CheckpointError as e:
                    log(f"cannot resume ({e}); starting again")
            if run is None:
                run = fit(cfg, data, out, overwrite=True, progress=False, log=log)
    except Exception:
        files.write_text(out / ERROR, traceback.format_exc())
        raise
    return {"seconds": run.summary["seconds"], "test": run.summary["final"]["test"]}


def run_batch(configs: list[dict], outs: list[str], engine: str) -> list[dict]:
    """Train fresh runs side by side on `engine` (the one each gets alone: the same numbers)
    into their folders; each run's seconds and final test metrics, as run_one returns."""
    from lecun1989.train.loop import fit_runs

    folders = [files.make_folder(o) for o in outs]
    cfgs = [RunConfig.from_dict(c) for c in configs]
    data = _run_data(cfgs[0])
    for cfg in cfgs[1:]:
        cfg.data.name = cfgs[0].data.name
    def log(line):
        for f in folders:
            with open(f / LOG, "a") as handle:
                print(line, file=handle)

    try:
        runs = fit_runs(cfgs, data, folders, engine=engine, overwrite=True, progress=False,
                        log=log)
    except Exception:
        for f in folders:
            files.write_text(f / ERROR, traceback.format_exc())
        raise
    return [{"seconds": r.summary["seconds"], "test": r.summary["final"]["test"]}
            for r in runs]


def batches(todo: list, redo: bool) -> tuple[list[tuple[str, list]], list]:
    """Split the runs to do into batches that one engine trains side by side, with the same
    numbers each run gets alone ((engine, [(cfg, out), ...]), two runs or more each), and
    the runs left to run one by one: those with a checkpoint to resume, those whose seed
    picks their patterns, and those no other run can join."""
    from importlib import import_module

    from lecun1989.engines import ENGINES, choose_engine, why_not
    from lecun1989.engines.base import config_fields
    from lecun1989.errors import ConfigError
    from lecun1989.train.patterns import patterns_depend_on_seed

    groups: dict = {}
    singles = []
    for cfg, out in todo:
        try:
            name = choose_engine(cfg)[0]  # the engine it gets alone
        except ConfigError:
            singles.append((cfg, out))  # (its own run says why)
            continue
        if (not redo and (out / rundir.CHECKPOINT).is_file()) or patterns_depend_on_seed(cfg):
            singles.append((cfg, out))
            continue
        per_model = import_module(ENGINES[name][0]).PER_MODEL
        shared = {k: v for k, v in config_fields(cfg).items() if k not in per_model}
        key = (name, _data_key(cfg), json.dumps(shared, sort_keys=True, default=str))
        groups.setdefault(key, []).append((cfg, out))
    together = []
    for (name, *_), runs in groups.items():
        if len(runs) > 1 and why_not(name, [c for c, _ in runs]) is None:
            together.append((name, runs))
        else:
            singles.extend(runs)
    return together, singles


def _batched(together: list, resume: bool):
    """Run each batch here, on every core; yield each run's (out, (result, error))."""
    for name, runs in together:
        outs = [out for _, out in runs]
        results, error = _call(run_batch, [c.to_dict() for c, _ in runs],
                               [str(o) for o in outs], name)
        for k, out in enumerate(outs):
            yield out, ((results[k], None) if error is None else (None, error))


def run_one_thread(config: dict, out: str, resume: bool = True) -> dict:
    """run_one on one thread: what a submitit job runs."""
    one_thread()
    return run_one(config, out, resume)


def _in_process(todo, resume: bool):
    with single_threaded():
        for cfg, out in todo:
            yield out, _call(run_one, cfg.to_dict(), str(out), resume)


def _call(fn, *args):
    """(result, None) or (None, one line saying why it failed)."""
    try:
        return fn(*args), None
    except Exception as e:
        return None, _why(e)


def _why(e: Exception) -> str:
    """One line: a UserError's message, else the exception's type and last message line."""
    lines = str(e).strip().splitlines() or [""]
    return lines[0] if isinstance(e, UserError) else f"{type(e).__name__}: {lines[-1]}"


def _start_worker(data: dict) -> None:
    """A pool worker: one thread, the data the parent loaded, and deaf to the terminal's
    Ctrl-C (its own process group): the parent passes Ctrl-C on, once."""
    one_thread()
    _DATA.update(data)
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # fit listens to SIGINT while it trains


_STOPPED = []  # in a pool worker: set once a run was stopped: start no other run


def _pool_run(config: dict, out: str, resume: bool) -> dict:
    """run_one in a pool worker, which starts no new run once one was stopped."""
    if _STOPPED:
        raise KeyboardInterrupt("the sweep was stopped")
    try:
        return run_one(config, out, resume)
    except KeyboardInterrupt as e:  # fit's RunInterrupted does not survive pickling: a plain one
        _STOPPED.append(True)
        raise KeyboardInterrupt(str(e)) from None


def _interrupt(signum, frame):
    raise Interrupted(signum)


def _in_pool(todo, workers: int, resume: bool):
    """Run in a pool; on Ctrl-C or SIGTERM each worker stops its run at a checkpoint."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    data = {key: _DATA[key] for key in {_data_key(cfg) for cfg, _ in todo}}
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(data,)) as pool:
            futures = {pool.submit(_pool_run, cfg.to_dict(), str(out), resume): out
                       for cfg, out in todo}
            try:
                for future in as_completed(futures):
                    yield futures[future], _call(future.result)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGINT)  # fit checkpoints and stops
                raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)


def _on_submitit(todo, executor, poll_s: float, resume: bool):
    """Submit every run as one job array and yield them as they finish."""
    from submitit.helpers import as_completed as jobs_completed

    with executor.batch():
        jobs = [executor.submit(run_one_thread, cfg.to_dict(), str(out), resume)
                for cfg, out in todo]
    folders = {job.job_id: out for job, (_, out) in zip(jobs, todo, strict=True)}
    for job in jobs_completed(jobs, poll_frequency=poll_s):
        yield folders[job.job_id], _call(job.result)


def run_sweep(configs: list[RunConfig], sweep_dir: str | os.PathLike, *, workers: int = 1,
              executor=None, redo: bool = False, progress: bool = True, log=print,
              poll_s: float = 5.0) -> SweepResult:
    """Run every config not yet finished into sweep_dir/<preset>-<hash>/.

    workers=1 runs them here, one after another; workers>1 in a process pool of that
    many single-threaded workers; `executor` (a submitit Executor) submits them as a
    job array instead. Stopped runs resume from their checkpoint; redo=True starts
    every run afresh, finished ones too.
    """
    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more")
    runs = plan(configs, sweep_dir)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    result = SweepResult(skipped=[out for _, out in runs if is_finished(out) and not redo])
    todo = [(cfg, out) for cfg, out in runs if out not in result.skipped]
    workers = min(workers, len(todo))
    how = (f"on submitit ({getattr(executor, 'cluster', 'custom')})" if executor is not None else
           f"in a pool of {workers} processes" if workers > 1 else "in this process")
    log(f"sweep: {len(runs)} runs, {len(result.skipped)} finished already; "
        + (f"running {len(todo)} {how} into {sweep_dir}" if todo else "nothing to run"))
    if not todo:
        return result
    for cfg in {_data_key(cfg): cfg for cfg, _ in todo}.values():
        _run_data(copy.deepcopy(cfg))  # data errors stop the sweep here; downloads happen once
    together, singles = ([], todo) if executor is not None else batches(todo, redo)
    if together:
        log(f"sweep: {sum(len(runs) for _, runs in together)} runs in {len(together)} "
            f"batch(es) trained side by side: " + ", ".join(
                f"{len(runs)} on the {name} engine" for name, runs in together))
    if executor is not None:
        finished = _on_submitit(todo, executor, poll_s, resume=not redo)
    elif workers > 1:
        finished = itertools.chain(_batched(together, not redo),
                                   _in_pool(singles, workers, resume=not redo) if singles
                                   else ())
    else:
        finished = itertools.chain(_batched(together, not redo),
                                   _in_process(singles, resume=not redo))
    bar, t0 = _bar(len(todo), progress), time.perf_counter()
    say = bar.write if bar else log
    for i, (out, (value, error)) in enumerate(finished, 1):
        if error is None:
            result.ran.append(out)
            say(f"[{i}/{len(todo)}] {out.name}: test error {value['test']['error']:.2%} "
                f"({value['seconds']:.1f} s)")
        else:
            result.failed[out] = error
            say(f"[{i}/{len(todo)}] {out.name}: FAILED: {error}")
        if bar:
            bar.update()
    if bar:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def _bar(total: int, enabled: bool):
    """A progress bar over runs, or None when not on a terminal or CI is set."""
    if not enabled or os.environ.get("CI") or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="sweep", dynamic_ncols=True)
