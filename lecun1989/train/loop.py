"""The training loop shared by every engine and every number of models: one model is K = 1.

    cfg = preset("paper"); data = load_run_data(cfg)
    run = fit(cfg, data, out="runs/demo")                      # one model
    runs = fit(cfg, data, out="runs/five", seeds=range(5))     # five seeds, side by side

NC89 §4: one pattern per update, always in the same order, 23 passes; after each pass the
train and test sets are evaluated (MSE, error rate, misses, reject for 1% error).

A K-model run writes one run folder per seed (out/seed-<s>/, each what a one-model run
writes) and out/seeds.json naming them; out/summary.json aggregates the seeds at the end
(seeds.py). What a pass presents: patterns.py; the data and their metrics: data.py.
Models that see the same patterns in the same order train together in one engine; seed k
of a K-model run equals a one-model run of seed k on the same engine, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from lecun1989.config import PRESETS, RunConfig
from lecun1989.engines import ModelView, choose_engine, device_of, make_engine, why_not
from lecun1989.errors import CheckpointError, ConfigError, UserError
from lecun1989.model.params import init_params
from lecun1989.train import checkpoint, rundir
from lecun1989.train.checkpoint import TrainState
from lecun1989.train.data import RunData, data_sha256, evaluate, load_run_data, versions
from lecun1989.train.metrics import MSE_CONVENTION, evaluate_outputs
from lecun1989.train.metrics import format_metric as fmt
from lecun1989.train.patterns import dropout_keep, lr_at, pass_data, patterns_depend_on_seed
from lecun1989.train.runs import SEEDS
from lecun1989.train.seeds import (
    parse_seeds,
    resolve_out,
    resume_config,
    resume_seeds,
    seed_dir,
    seeds_summary,
)

# --- runs --------------------------------------------------------------------------------

@dataclass
class Run:
    """A finished model: its summary, the engine view holding its weights, its folder."""

    summary: dict
    engine: object
    out: Path | None
    loss_history: list = field(default_factory=list)  # mean loss every train.loss_every steps


@dataclass
class _Model:
    """One model of a fit: its config, folder, training state, records and callbacks."""

    cfg: RunConfig
    out: Path | None
    state: TrainState
    records: list = field(default_factory=list)  # metrics of every pass so far
    callbacks: list = field(default_factory=list)
    engine: object = None  # a ModelView once its group's engine exists
    warned: bool = False  # a stall warning was printed


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM after writing a resumable checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # survives pickling (process pools)
        return type(self), (self.args[0], self.signum)


class _StopSignals:
    """While installed, a first SIGINT or SIGTERM asks the run to stop; a second aborts."""

    def __init__(self, enabled: bool):
        self.signum: int | None = None
        self._old = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


Callbacks = Sequence | Callable[[RunConfig, Path | None], Sequence]


def fit(cfg: RunConfig, data: RunData, out: str | os.PathLike | None = None, *,
        seeds: Iterable[int] | str | None = None, overwrite: bool = False,
        resume: bool = False, progress: bool = True, log=print,
        callbacks: Callbacks = ()) -> Run | list[Run]:
    """Train cfg from its seed's initial weights (with `seeds`: one model per seed, side by
    side), or with `resume` continue out's checkpoints. Returns a Run (a list with `seeds`).

    With `out`, each model's folder gets config.json, metrics.jsonl, a resumable checkpoint at
    the start and after every pass, and summary.json last. SIGINT or SIGTERM stops the run
    at the end of the current chunk of `loss_every` steps: it writes a checkpoint there and
    raises RunInterrupted; `fit(..., resume=True)` then ends bit-identical to an
    uninterrupted run. `callbacks`: objects with any of `on_steps(step, pass_index, losses,
    engine)`, `on_pass(pass_index, metrics, engine)`, `on_checkpoint(step, pass_index)` (before
    a mid-pass checkpoint: a stop), `on_resume(step, pass_index, history)`, or a function
    (cfg, model folder) -> such objects, called once per model. A callback with
    `concurrent = True` (it touches only its own model's folder) lets the models of a
    K-model run end their passes on threads, side by side (`_each_model`).
    """
    if resume and out is None:
        raise UserError("resuming needs the run folder (out)")
    many = seeds is not None or (resume and (Path(out) / SEEDS).is_file())
    root = Path(out) if out is not None else None
    if resume:
        seed_list = resume_seeds(root) if many else [cfg.seed]
        cfgs = [replace(cfg, seed=s) for s in seed_list]
        outs = [root / seed_dir(s) for s in seed_list] if many else [root]
    else:
        seed_list = parse_seeds(seeds) if seeds is not None else [cfg.seed]
        cfgs = [replace(cfg, seed=s) if many else cfg for s in seed_list]
        outs = [root / seed_dir(s) if many else root for s in seed_list] if root else \
            [None] * len(cfgs)
    return _fit(cfgs, outs, data, seeds_root=root if many else None, many=many, resume=resume,
                overwrite=overwrite, progress=progress, log=log, callbacks=callbacks)


def fit_runs(cfgs: list[RunConfig], data: RunData, outs: list[str | os.PathLike], *,
             engine: str | None = None, overwrite: bool = False, progress: bool = True,
             log=print, callbacks: Callbacks = ()) -> list[Run]:
    """Several fresh runs side by side, each into its own folder as `fit` writes one: configs
    one engine can train together (the same patterns; they may differ in the engine's
    PER_MODEL fields: seeds, step sizes, ...). Each run's numbers are those it gets alone
    on the same engine. An interrupted one is continued alone with `fit(..., resume=True)`.
    `engine`: the engine to use (default: as `auto` chooses for these models together)."""
    return _fit(list(cfgs), [Path(o) for o in outs], data, seeds_root=None, many=True,
                resume=False, overwrite=overwrite, progress=progress, log=log,
                callbacks=callbacks, engine=engine)


def _fit(cfgs: list[RunConfig], outs: list, data: RunData, *, seeds_root: Path | None,
         many: bool, resume: bool, overwrite: bool, progress: bool, log,
         callbacks: Callbacks, engine: str | None = None) -> Run | list[Run]:
    """fit and fit_runs: the models `cfgs` into the folders `outs` (None: no files), a
    folder of seeds under `seeds_root` when given."""
    root = seeds_root if seeds_root is not None else (outs[0] if len(outs) == 1 else None)
    engine_name, why = choose_engine(cfgs)  # a named engine that cannot: refused here
    if engine is not None:
        reason = why_not(engine, cfgs)
        if reason is not None:
            raise ConfigError(f"these runs cannot train together on the {engine} engine: "
                              f"{reason}")
        engine_name, why = engine, "the engine each run gets alone"
    # Everything is checked before a folder is touched: pass 0's patterns too (shifts).
    pass_data(cfgs[0], 0, data.train_images[:1], data.train_labels[:1])
    if not resume:
        for path in ([seeds_root] if seeds_root else []) + [o for o in outs if o is not None]:
            rundir.check_out(path, overwrite=overwrite)
    digest = data_sha256(data)  # (of every array: once, not once per model)
    models = [_Model(c, o, TrainState(passes_done=0, sample=0, step=0, engine=engine_name,
                                      data_sha256=digest, optimizer={}, history=[]))
              for c, o in zip(cfgs, outs, strict=True)]
    signals = _StopSignals(enabled=any(o is not None for o in outs))
    prepared: list[Path] = []
    try:
        if resume:  # (the folders are locked first: nothing else may write while we read)
            prepared = _prepare(seeds_root, outs, overwrite, resume)
            params = _resume(models, data, digest, callbacks, root)
            engine_name, why = models[0].state.engine, "the engine the run began with"
            first = min(models, key=lambda m: (m.state.passes_done, m.state.sample)).state
            log(f"resuming {root} at pass {first.passes_done + 1}/{cfgs[0].train.passes}, "
                f"sample {first.sample}")
        else:
            params = [init_params(m.cfg.model, m.cfg.seed) for m in models]
        params_of = {id(m): p for m, p in zip(models, params, strict=True)}
        groups = _groups(models)
        engines = []
        for group in groups:
            engines.append(make_engine(engine_name, [m.cfg for m in group],
                                       [params_of[id(m)] for m in group]))
            if resume:
                try:
                    engines[-1].load_optimizer_state([m.state.optimizer for m in group])
                except (RuntimeError, ValueError, KeyError, TypeError) as e:
                    raise CheckpointError(f"{group[0].out}: its optimizer state is unusable "
                                          f"({str(e).splitlines()[0]}); start a new run"
                                          ) from None
            for k, m in enumerate(group):
                m.engine = ModelView(engines[-1], k)
        for built in engines:  # (compile time is not training time)
            built.warm_up(data.train_images, log)
        if not resume:  # started cleanly: only now are the folders created (or cleared)
            prepared = _prepare(seeds_root, outs, overwrite, resume)
            if seeds_root is not None:
                rundir.write_json(seeds_root / SEEDS, {
                    "seeds": [c.seed for c in cfgs], "dirs": [seed_dir(c.seed) for c in cfgs],
                    "config": {**cfgs[0].to_dict(), "seed": None}})
            for m in models:
                m.callbacks = _callbacks(callbacks, m)
                if m.out is not None:
                    rundir.write_json(m.out / rundir.CONFIG, _config_record(m, why, data))
                    _save(m)
        log(f"engine: {engine_name} ({why})" + (f"; {len(models)} models" if many else ""))
        for group, built in zip(groups, engines, strict=True):
            _train(group, built, data, signals, progress, log, many,
                   root if root is not None else "each run's folder")
        runs = [_finish(m, data) for m in models]
        if seeds_root is not None:
            rundir.write_json(seeds_root / rundir.SUMMARY,
                              seeds_summary([r.summary for r in runs]))
        return runs if many else runs[0]
    finally:
        signals.restore()
        for path in reversed(prepared):  # the seeds' folders before their root
            rundir.release(path)


def _prepare(seeds_root: Path | None, outs: list, overwrite: bool, resume: bool
             ) -> list[Path]:
    """Create (or check, to resume) and lock the run folders; returns those to release."""
    prepared = []
    try:
        if seeds_root is not None:
            prepared.append(rundir.prepare(seeds_root, overwrite, resume=resume, marker=SEEDS))
        for path in outs:
            if path is not None:
                prepared.append(rundir.prepare(path, overwrite, resume=resume))
    except BaseException:
        for path in reversed(prepared):
            rundir.release(path)
        raise
    return prepared


def _callbacks(callbacks: Callbacks, m: _Model) -> list:
    return list(callbacks(m.cfg, m.out) if callable(callbacks) else callbacks)


def _config_record(m: _Model, why: str, data: RunData) -> dict:
    """config.json: the complete config, the engine and why, versions, the data manifest."""
    return {**m.cfg.to_dict(), "engine_resolved": m.state.engine, "engine_reason": why,
            "device_resolved": device_of(m.state.engine, m.cfg),
            "versions": versions(), "data_manifest": data.manifest}


def _groups(models: list[_Model]) -> list[list[_Model]]:
    """Models that train in one engine: the same patterns (not seed-dependent ones) and the
    same place in the run (a resume after a kill between two seeds' checkpoints)."""
    groups: dict = {}
    for i, m in enumerate(models):
        apart = i if patterns_depend_on_seed(m.cfg) else -1
        groups.setdefault((apart, m.state.passes_done, m.state.sample), []).append(m)
    return list(groups.values())


def _train(models: list[_Model], engine, data: RunData, signals: _StopSignals, progress: bool,
           log, many: bool, root: Path | None) -> None:
    """The group's passes from where its models stand (each model's state follows it)."""
    cfg, first_state = models[0].cfg, models[0].state
    n, passes = len(data.train_labels), cfg.train.passes
    chunk = max(1, min(cfg.train.loss_every, n))
    step = first_state.step
    done = first_state.seconds if first_state.seconds is not None else (
        models[0].records[-1]["seconds"] if models[0].records else 0.0)
    t0 = time.perf_counter() - done
    for p in range(first_state.passes_done, passes):
        images, labels = pass_data(cfg, p, data.train_images, data.train_labels)
        keep = _stack([dropout_keep(m.cfg, p, n) for m in models])
        first = models[0].state.sample
        for m in models:
            m.state.sample, m.state.seconds = 0, None
        if first == 0:  # (resumed mid-pass, SDLM's h of this pass is the checkpoint's)
            engine.begin_pass(p, images, labels)
        bar = _progress(n, f"pass {p + 1}/{passes}" + (f", {len(models)} models" if many
                                                        else ""), progress)
        if bar and first:
            bar.update(first)
        for start in range(first, n, chunk):
            stop = min(start + chunk, n)
            lr = np.array([lr_at(m.cfg, p, step, passes * n) for m in models])
            losses = engine.train_steps(images, labels, start, stop, lr, keep)
            step += stop - start
            end_of_chunk = stop == n or bool(signals.signum)
            # every model's mean loss and check at once (each row's mean as np.mean of the
            # row alone: numpy sums a contiguous row the same way)
            losses = np.ascontiguousarray(losses)
            means, finite = losses.mean(axis=1).tolist(), bool(np.isfinite(losses).all())
            for m, loss, mean in zip(models, losses, means, strict=True):
                m.state.step = step
                m.state.history.append({"step": step, "pass": p, "loss": mean})
                if end_of_chunk or not finite:  # (the weights: before a checkpoint)
                    _check_finite(loss, m, p, step, weights=end_of_chunk)
                for cb in m.callbacks:
                    if hasattr(cb, "on_steps"):
                        cb.on_steps(step, p, loss, m.engine)
            if bar:
                bar.update(stop - start)
                bar.set_postfix(loss=f"{float(np.mean(losses[:, -1])):.4f}")
            if signals.signum and stop < n:
                if bar:
                    bar.close()
                for m in models:
                    m.state.sample, m.state.seconds = stop, round(time.perf_counter() - t0, 3)
                    for cb in m.callbacks:  # (what they hold for the pass's end: now)
                        if hasattr(cb, "on_checkpoint"):
                            cb.on_checkpoint(step, p)
                    _save(m)
                raise _interrupted(signals.signum, models[0].state, root, n, passes)
        if bar:
            bar.close()
        train_seconds = time.perf_counter() - t0
        outputs = {"train": engine.predict(data.train_images),
                   "test": engine.predict(data.test_images)}
        _each_model(models, partial(_end_pass, p=p, step=step, seconds=round(train_seconds, 3),
                                    outputs=outputs, data=data))
        log(_pass_line([m.records[-1] for m in models], passes, [m.cfg.seed for m in models]
                       if many else None))
        for m, warning in zip(models, stall_warnings(models[0].cfg, outputs["train"],
                                                     [m.records[-1] for m in models]),
                              strict=True):
            if warning and not m.warned:  # once per model
                m.warned = True
                log(f"warning: seed {m.cfg.seed}: {warning}" if many else f"warning: {warning}")
        t0 = time.perf_counter() - train_seconds  # evaluation time is not training time
        if signals.signum and p + 1 < passes:
            raise _interrupted(signals.signum, models[0].state, root, n, passes)


def _end_pass(k: int, m: _Model, *, p: int, step: int, seconds: float, outputs: dict,
              data: RunData) -> None:
    """Model k's end of pass p: its metrics from the engine's outputs (metrics.jsonl), its
    callbacks' on_pass, its checkpoint."""
    metrics = {"pass": p + 1, "step": step, "seconds": seconds,
               **{split: evaluate_outputs(outputs[split][k], labels, m.cfg.train.target)
                  for split, labels in (("train", data.train_labels),
                                        ("test", data.test_labels))}}
    m.records.append(metrics)
    if m.out:
        rundir.append_jsonl(m.out / rundir.METRICS, metrics)
    for cb in m.callbacks:
        if hasattr(cb, "on_pass"):
            cb.on_pass(p, metrics, m.engine)
    m.state.passes_done = p + 1
    if m.out:
        _save(m)  # a SIGKILL loses at most one pass


def _each_model(models: list[_Model], work: Callable[[int, _Model], None]) -> None:
    """work(k, model) for every model: on threads (`_pass_pool`) when there are several and
    every callback says it may run beside other models' (`concurrent`: it touches only its
    own model's folder), else one after the other. Each model's files are flushed to disk
    (fsync) several times a pass; on threads those waits overlap instead of adding up (20
    models: 120 a pass). All models finish; then the first failure, in model order, is
    raised (each model's folder is consistent on its own, as after a kill)."""
    if len(models) == 1 or not all(getattr(cb, "concurrent", False)
                                   for m in models for cb in m.callbacks):
        for k, m in enumerate(models):
            work(k, m)
        return
    global _pass_pool
    with _pass_pool_made:
        if _pass_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pass_pool = ThreadPoolExecutor(4, thread_name_prefix="lecun1989-pass")
    futures = [_pass_pool.submit(work, k, m) for k, m in enumerate(models)]
    try:
        for future in futures:  # all of them, before any failure is raised
            future.exception()
    finally:
        for future in futures:  # (interrupted while waiting: none starts after we leave)
            future.cancel()
    for future in futures:
        future.result()


# `_each_model`'s threads: made once and kept for the process, and 4 of them (16, or new
# ones every pass, added 10-40 MB to a 20-model run and grew it pass after pass; 4 keep
# most of the overlap: BENCHMARKS.md)
_pass_pool = None
_pass_pool_made = threading.Lock()


STALLED_AFTER = 5000  # patterns: a network still guessing after this many is stuck


def stall_warnings(cfg: RunConfig, train_outputs: np.ndarray, records: list[dict]
                   ) -> list[str | None]:
    """For each model, why its training went nowhere, with the likely cause and the fix (one
    line), or None: its outputs pinned at the squashing function's ends (half of them beyond
    99% of A), or a train error no better than guessing (>= 80% of 10 classes) after
    STALLED_AFTER patterns."""
    lines = []
    squash = cfg.model.output_activation and cfg.model.activation == "tanh"
    for outputs, record in zip(train_outputs, records, strict=True):
        error = record["train"]["error"]
        pinned = squash and np.mean(np.abs(outputs) > 0.99 * cfg.model.tanh_scale) > 0.5
        if error < 0.8 or not (pinned or record["step"] >= STALLED_AFTER):
            lines.append(None)
            continue
        what = (f"train error {error:.0%}, its outputs pinned at +-{cfg.model.tanh_scale:g}"
                if pinned else f"train error {error:.0%} after {record['step']} patterns, no "
                               "better than guessing")
        step = "SDLM's global step eps" if cfg.train.optimizer == "sdlm" else "the step size"
        default = PRESETS[cfg.preset]().train.lr if cfg.preset in PRESETS else None
        fix = (f"the preset's train.lr={default:g}" if default is not None and
               default < cfg.train.lr else f"train.lr={cfg.train.lr / 10:g}")
        lines.append(f"after pass {record['pass']} the network is not learning ({what}); "
                     f"train.lr={cfg.train.lr:g} is likely too large for train.optimizer="
                     f"{cfg.train.optimizer}, whose train.lr is {step}: try {fix}")
    return lines


def _finish(m: _Model, data: RunData) -> Run:
    """The model's summary (written to its folder) and its Run."""
    summary = _summary(m.cfg, data, m.state.engine, m.records)
    if m.out:
        rundir.write_json(m.out / rundir.SUMMARY, summary)
    return Run(summary, m.engine, m.out, m.state.history)


def _summary(cfg: RunConfig, data: RunData, engine_name: str, records: list[dict]) -> dict:
    """summary.json of a finished model: its setup, every pass's metrics, the final ones."""
    return {
        "preset": cfg.preset,
        "seed": cfg.seed,
        "data": {"name": data.name, "train": len(data.train_labels),
                 "test": len(data.test_labels)},
        "engine": engine_name,
        "seconds": records[-1]["seconds"] if records else 0.0,
        "mse_convention": MSE_CONVENTION,
        "passes": records,
        "final": {"train": records[-1]["train"], "test": records[-1]["test"]},
    }


def _save(m: _Model) -> None:
    """Write the model's weights, optimizer state and training state as its checkpoint."""
    if m.out is None:
        return
    m.state.optimizer = m.engine.optimizer_state()
    m.state.records_sha256 = records_digest(m.records)
    checkpoint.save_state(m.out / rundir.CHECKPOINT, m.cfg, m.engine.params(), m.state)


def records_digest(records: list[dict]) -> str:
    """A digest of the metrics records so far (their timings left out: identical runs write
    identical checkpoints): ties a checkpoint to its folder's metrics."""
    text = "".join(json.dumps({**r, "seconds": None}, sort_keys=True) + "\n" for r in records)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resume(models: list[_Model], data: RunData, digest: str, callbacks: Callbacks,
            root: Path) -> list[dict]:
    """Each model's parameters and state from its checkpoint, checked against its folder
    and the data (`digest`: data_sha256); `root`: the run's folder, for the messages."""
    params = []
    for m in models:
        path = m.out / rundir.CHECKPOINT
        saved, p, state = checkpoint.load_state(path)
        difference = _first_difference(_comparable(saved), _comparable(m.cfg))
        if difference:
            raise CheckpointError(f"{path}: from another config ({difference}); resume a run "
                                  "with its own config (`lecun1989 train --resume RUN_DIR`)")
        if state.data_sha256 != digest:
            raise CheckpointError(f"{path}: the data differ from those the run was trained "
                                  "on; resume with the same data files")
        m.records = rundir.keep_jsonl(m.out / rundir.METRICS, state.passes_done)
        if state.records_sha256 and records_digest(m.records) != state.records_sha256:
            raise CheckpointError(f"{path}: does not match {m.out / rundir.METRICS} (it comes "
                                  "from another run); put the run's own checkpoint back or "
                                  "start a new run")
        m.state = state
        params.append(p)
    if all(m.state.passes_done == m.cfg.train.passes and (m.out / rundir.SUMMARY).is_file()
           for m in models):
        raise UserError(f"{root}: the run is already finished ({models[0].cfg.train.passes} "
                        f"passes); evaluate it with `lecun1989 evaluate {root}`")
    states = {m.state.engine for m in models}
    if len(states) != 1:
        raise CheckpointError(f"the seeds were trained by different engines ({sorted(states)}); "
                              "the folder is damaged: start the run again")
    for m in models:  # what the checkpoint says, whatever config.json holds now (edited, lost)
        m.callbacks = _callbacks(callbacks, m)
        rundir.write_json(m.out / rundir.CONFIG, _config_record(
            m, "the engine the run began with", data))
        for cb in m.callbacks:
            if hasattr(cb, "on_resume"):
                cb.on_resume(m.state.step, m.state.passes_done, list(m.state.history))
    return params


def _comparable(cfg: RunConfig) -> dict:
    """The config without what may change between a run and its resumption (data location)."""
    d = cfg.to_dict()
    d["data"].pop("data_dir")
    return d


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """'key: a vs b' for the first differing (dotted) key of two nested dicts, else None."""
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = _first_difference(x, y, f"{prefix}{key}.")
            if found:
                return found
        elif x != y:
            return f"{prefix}{key}: {x!r} in the checkpoint, {y!r} here"
    return None


def _check_finite(losses: np.ndarray, m: _Model, p: int, step: int, weights: bool) -> None:
    """UserError naming pass and step if the loss (or, with `weights`, a weight: before each
    checkpoint) is NaN or infinite. A bad weight shows in the next pattern's loss, so the
    weights are read only where no next loss comes before a checkpoint."""
    what = None
    if not np.all(np.isfinite(losses)):
        what = f"the loss is {losses[~np.isfinite(losses)][0]}"
    elif weights:
        for name, value in m.engine.params().items():
            if not np.all(np.isfinite(value)):
                what = f"weight {name} is {value[~np.isfinite(value)].flat[0]}"
                break
    if what is None:
        return
    kept = (f"; the last good checkpoint (after pass {p}) is kept in "
            f"{m.out / rundir.CHECKPOINT}" if m.out else "")
    raise UserError(f"training diverged at pass {p + 1}, step {step} (seed {m.cfg.seed}: "
                    f"{what}){kept}; lower the learning rate, e.g. "
                    f"--set train.lr={m.cfg.train.lr / 10:g}")


def _interrupted(signum: int, s: TrainState, out: Path, n: int, passes: int) -> RunInterrupted:
    where = (f"pass {s.passes_done + 1}/{passes}, sample {s.sample}/{n}" if s.sample else
             f"the end of pass {s.passes_done}/{passes}")
    return RunInterrupted(f"stopped by {signal.Signals(signum).name} at {where}; a "
                          f"resumable checkpoint is in {out}", signum)


def _stack(masks: list) -> np.ndarray | None:
    return None if masks[0] is None else np.stack(masks)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or os.environ.get("CI") or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="step", dynamic_ncols=True)


def _pass_line(records: list[dict], passes: int, seeds: list[int] | None) -> str:
    """The line printed after a pass: one model's metrics, or the seeds' median [min, max]."""
    m = records[0]
    if seeds is None:
        tr, te = m["train"], m["test"]
        return (f"pass {m['pass']:2d}/{passes}  train mse {fmt('mse', tr['mse'])} err "
                f"{fmt('error', tr['error']):>6s} ({tr['misses']:4d})  test mse "
                f"{fmt('mse', te['mse'])} err {fmt('error', te['error']):>6s} "
                f"({te['misses']:4d})  {m['seconds']:7.1f}s")

    def spread(split: str) -> str:
        v = np.array([r[split]["error"] for r in records])
        return (f"{fmt('error', float(np.median(v))):>6s} [{fmt('error', v.min())}, "
                f"{fmt('error', v.max())}]")

    return (f"pass {m['pass']:2d}/{passes}  {len(seeds)} seeds, error median [min, max]: "
            f"train {spread('train')}  test {spread('test')}  {m['seconds']:7.1f}s")


__all__ = ["SEEDS", "Run", "RunData", "RunInterrupted", "data_sha256", "dropout_keep",
           "evaluate", "fit", "fit_runs", "load_run_data", "lr_at", "parse_seeds", "pass_data",
           "resolve_out", "resume_config", "seed_dir", "seeds_summary", "stall_warnings",
           "versions"]
