"""The training driver shared by every engine: passes, evaluation, metrics, run directory.

    cfg = preset("paper"); data = load_run_data(cfg)
    summary = fit(cfg, data, out="runs/demo")

NC89 §4: one pattern per update, always in the same order, 23 passes; after each pass
the train and test sets are evaluated (MSE, error rate, misses, reject for 1% error).
"""

from __future__ import annotations

import hashlib
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lecun1989 import data as datasets
from lecun1989.config import RunConfig
from lecun1989.data.base import library_versions
from lecun1989.engines import choose_engine, make_engine
from lecun1989.errors import CheckpointError, UserError
from lecun1989.model.net import conv_out, init_params
from lecun1989.model.tables import MAPS
from lecun1989.train import checkpoint, rundir
from lecun1989.train.checkpoint import TrainState
from lecun1989.train.metrics import MSE_CONVENTION, evaluate_outputs

LIBRARIES = ("lecun1989", "torch", "numpy", "numba", "llvmlite", "scikit-learn", "mlxtend",
             "safetensors")


def versions() -> dict[str, str]:
    """Python, platform and library versions (results drift with them)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            **library_versions(LIBRARIES)}


@dataclass
class RunData:
    """The arrays a run trains and evaluates on, with their provenance."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    manifest: dict = field(default_factory=dict)
    note: str = ""  # how the source was chosen, printed first


def load_run_data(cfg: RunConfig, **load_kwargs) -> RunData:
    """Load cfg.data (resolving "auto" in place), then apply limits and a validation split."""
    d = cfg.data
    data_dir = d.data_dir or datasets.data_dir_from_env()
    note = ""
    if d.name == "auto":
        d.name, note = datasets.default_source(data_dir)
    raw = datasets.load(d.name, geometry=cfg.model.input_size, data_dir=data_dir,
                        seed=d.sample_seed,
                        **load_kwargs)
    xtr, ytr, xte, yte = raw.train_images, raw.train_labels, raw.test_images, raw.test_labels
    manifest = dict(raw.manifest)
    if d.validation:
        if d.validation >= len(ytr):
            raise UserError(f"data.validation={d.validation} must be below the "
                            f"{len(ytr)} training digits")
        # Model selection never sees the test set: the last N training digits stand in for it.
        xte, yte = xtr[-d.validation:], ytr[-d.validation:]
        xtr, ytr = xtr[:-d.validation], ytr[:-d.validation]
        manifest["validation"] = f"test set replaced by the last {d.validation} training digits"
    if d.limit_train:
        xtr, ytr = xtr[:d.limit_train], ytr[:d.limit_train]
    if d.limit_test:
        xte, yte = xte[:d.limit_test], yte[:d.limit_test]
    manifest["used"] = {"train": len(ytr), "test": len(yte)}
    return RunData(d.name, xtr, ytr, xte, yte, manifest, note)


def lr_at(cfg: RunConfig, pass_index: int, step: int, total_steps: int) -> float:
    """The step size for a pass: lr, replaced by lr_schedule entries, or a linear decay."""
    t = cfg.train
    lr = t.lr
    for first_pass, value in sorted(t.lr_schedule or []):
        if pass_index >= first_pass:
            lr = value
    if t.lr_final is not None:
        lr = t.lr + (t.lr_final - t.lr) * step / max(total_steps - 1, 1)
    return float(lr)


def pass_data(cfg: RunConfig, pass_index: int, images: np.ndarray, labels: np.ndarray):
    """The patterns of one pass: NC89's fixed order, or shuffled / shifted for ablations."""
    t = cfg.train
    if not t.shuffle and not t.augment_shift:
        return images, labels
    rng = np.random.default_rng([cfg.seed, pass_index])
    order = rng.permutation(len(labels)) if t.shuffle else np.arange(len(labels))
    images, labels = images[order], labels[order]
    if t.augment_shift:
        images = _shift(images, rng.integers(-t.augment_shift, t.augment_shift + 1,
                                             size=(len(labels), 2)))
    return images, labels


def dropout_keep(cfg: RunConfig, pass_index: int, n: int) -> np.ndarray | None:
    """The pass's dropout masks (n, 192) in the model's dtype: 1 / (1 - p) with probability
    1 - p, else 0; None without dropout. Drawn here (seed, pass) for every engine alike: the
    same run gives the same numbers on either engine and after a resume."""
    p = cfg.model.dropout
    if not p:
        return None
    rng = np.random.default_rng([cfg.seed, pass_index, 1])  # its own stream (pass_data: 2 keys)
    size = MAPS * conv_out(conv_out(cfg.model.input_size)) ** 2  # H2's units
    return ((rng.random((n, size)) >= p) / (1 - p)).astype(cfg.model.dtype)


def _shift(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each image by (dy, dx) pixels, filling with the background value."""
    out = np.full_like(images, -1.0)  # the digits' background
    size = images.shape[-1]
    for i, (dy, dx) in enumerate(shifts):
        ys, yd = slice(max(0, -dy), size - max(0, dy)), slice(max(0, dy), size - max(0, -dy))
        xs, xd = slice(max(0, -dx), size - max(0, dx)), slice(max(0, dx), size - max(0, -dx))
        out[i, :, yd, xd] = images[i, :, ys, xs]
    return out


@dataclass
class Run:
    """A finished run: its summary, the engine holding the weights, its folder."""

    summary: dict
    engine: object
    out: Path | None
    loss_history: list = field(default_factory=list)  # mean loss every train.loss_every steps


def evaluate(engine, data: RunData, cfg: RunConfig) -> dict:
    """Train and test metrics of the engine's current weights."""
    return {
        "train": evaluate_outputs(engine.predict(data.train_images), data.train_labels,
                                  cfg.train.target),
        "test": evaluate_outputs(engine.predict(data.test_images), data.test_labels,
                                 cfg.train.target),
    }


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or os.environ.get("CI") or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, leave=False, unit="step", dynamic_ncols=True)


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


def data_sha256(data: RunData) -> str:
    """A digest of the arrays a run trains and is evaluated on (resume refuses other data)."""
    h = hashlib.sha256()
    for a in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()[:16]


def fit(cfg: RunConfig, data: RunData, out: str | os.PathLike | None = None, *,
        overwrite: bool = False, resume: bool = False, progress: bool = True, log=print,
        callbacks=()) -> Run:
    """Train from the seed's initial weights, or with `resume` from out's last checkpoint.

    With `out`, the run folder gets config.json, metrics.jsonl, a resumable checkpoint at
    the start and after every pass, and summary.json last. SIGINT or SIGTERM stops the run
    at the end of the current chunk of `loss_every` steps: it writes a checkpoint there and
    raises RunInterrupted; `fit(..., resume=True)` then ends bit-identical to an
    uninterrupted run. Callbacks may define `on_steps(step, pass_index, losses, engine)`,
    `on_pass(pass_index, metrics, engine)` and `on_resume(step, pass_index, history)`
    (called before a resumed run goes on: keep the records up to `step`, append after it).
    """
    if resume and out is None:
        raise UserError("resuming needs the run folder (out)")
    engine_name, why = choose_engine(cfg)
    engine = None if resume else make_engine(engine_name, cfg, init_params(cfg.model, cfg.seed))
    out = rundir.prepare(out, overwrite, resume=resume) if out is not None else None
    signals = _StopSignals(enabled=out is not None)
    try:
        if resume:
            engine, at = _resume(cfg, data, out, callbacks)
            engine_name, why = at.engine, "the engine the run began with"
            records = rundir.keep_jsonl(out / rundir.METRICS, at.passes_done)
            log(f"resuming {out} at pass {at.passes_done + 1}/{cfg.train.passes}, "
                f"sample {at.sample}")
        else:
            at = TrainState(0, 0, 0, engine_name, data_sha256(data), {}, None, [])
            records = []
            if out:
                rundir.write_json(out / rundir.CONFIG, {
                    **cfg.to_dict(), "engine_resolved": engine_name, "engine_reason": why,
                    "versions": versions(), "data_manifest": data.manifest})
                _save(out, cfg, engine, at)
        log(f"engine: {engine_name} ({why})")
        return _train(cfg, data, engine, out, at, records, signals, progress, log, callbacks)
    finally:
        signals.restore()
        if out:
            rundir.release(out)


def _train(cfg, data, engine, out, at: TrainState, records, signals, progress, log,
           callbacks) -> Run:
    """fit's passes from `at` on; `at` follows the run (it is what checkpoints save)."""
    n, passes = len(data.train_labels), cfg.train.passes
    chunk = max(1, min(cfg.train.loss_every, n))
    history = at.history
    done = at.seconds if at.seconds is not None else records[-1]["seconds"] if records else 0.0
    t0 = time.perf_counter() - done
    for p in range(at.passes_done, passes):
        images, labels = pass_data(cfg, p, data.train_images, data.train_labels)
        keep = dropout_keep(cfg, p, n)
        first, at.sample, at.seconds = at.sample, 0, None
        if first == 0:  # (resumed mid-pass, SDLM's h of this pass is the checkpoint's)
            engine.begin_pass(p, images, labels)
        bar = _progress(n, f"pass {p + 1}/{passes}", progress)
        if bar and first:
            bar.update(first)
        for start in range(first, n, chunk):
            stop = min(start + chunk, n)
            lr = lr_at(cfg, p, at.step, passes * n)
            losses = engine.train_steps(images, labels, start, stop, lr, keep)
            at.step += stop - start
            history.append({"step": at.step, "pass": p, "loss": float(np.mean(losses))})
            _check_finite(losses, engine, p, at.step, out, cfg,
                          weights=stop == n or bool(signals.signum))  # before a checkpoint
            for cb in callbacks:
                if hasattr(cb, "on_steps"):
                    cb.on_steps(at.step, p, losses, engine)
            if bar:
                bar.update(stop - start)
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if signals.signum and stop < n:
                if bar:
                    bar.close()
                at.sample, at.seconds = stop, round(time.perf_counter() - t0, 3)
                _save(out, cfg, engine, at)
                raise _interrupted(signals.signum, out, at, n, passes)
        if bar:
            bar.close()
        train_seconds = time.perf_counter() - t0
        metrics = {"pass": p + 1, "step": at.step, "seconds": round(train_seconds, 3),
                   **evaluate(engine, data, cfg)}
        t0 = time.perf_counter() - train_seconds  # evaluation time is not training time
        records.append(metrics)
        log(_pass_line(metrics, passes))
        if out:
            rundir.append_jsonl(out / rundir.METRICS, metrics)
        for cb in callbacks:
            if hasattr(cb, "on_pass"):
                cb.on_pass(p, metrics, engine)
        at.passes_done = p + 1
        if out:
            _save(out, cfg, engine, at)  # a SIGKILL loses at most one pass
        if signals.signum and p + 1 < passes:
            raise _interrupted(signals.signum, out, at, n, passes)
    summary = _summary(cfg, data, at.engine, records)
    if out:
        rundir.write_json(out / rundir.SUMMARY, summary)
    return Run(summary, engine, out, history)


def _summary(cfg: RunConfig, data: RunData, engine_name: str, records: list[dict]) -> dict:
    """summary.json of a finished run: its setup, every pass's metrics, the final ones."""
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


def _save(out: Path, cfg: RunConfig, engine, at: TrainState) -> None:
    """Write `at` and the engine's weights, optimizer state and torch's RNG as the checkpoint."""
    at.optimizer, at.torch_rng = engine.optimizer_state(), torch.get_rng_state().numpy()
    checkpoint.save_state(out / rundir.CHECKPOINT, cfg, engine.params(), at)


def _resume(cfg: RunConfig, data: RunData, out: Path, callbacks):
    """The engine and training state of out's checkpoint, checked against cfg and data."""
    path = out / rundir.CHECKPOINT
    saved, params, at = checkpoint.load_state(path)
    difference = _first_difference(_comparable(saved), _comparable(cfg))
    if difference:
        raise CheckpointError(f"{path}: from another config ({difference}); resume a run with "
                              "its own config (`lecun1989 train --resume RUN_DIR`)")
    if at.data_sha256 != data_sha256(data):
        raise CheckpointError(f"{path}: the data differ from those the run was trained on; "
                              "resume with the same data files")
    if at.passes_done == cfg.train.passes and (out / rundir.SUMMARY).is_file():
        raise UserError(f"{out}: the run is already finished ({at.passes_done} passes); "
                        f"evaluate it with `lecun1989 evaluate {out}`")
    engine = make_engine(at.engine, cfg, params)
    try:
        engine.load_optimizer_state(at.optimizer)
        torch.set_rng_state(torch.from_numpy(np.array(at.torch_rng, dtype=np.uint8)))
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its optimizer or RNG state is unusable "
                              f"({str(e).splitlines()[0]}); start a new run") from None
    for cb in callbacks:
        if hasattr(cb, "on_resume"):
            cb.on_resume(at.step, at.passes_done, list(at.history))
    return engine, at


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


def _check_finite(losses: np.ndarray, engine, p: int, step: int, out, cfg: RunConfig,
                  weights: bool) -> None:
    """UserError naming pass and step if the loss (or, with `weights`, a weight: before each
    checkpoint) is NaN or infinite. A bad weight shows in the next pattern's loss, so the
    weights are read only where no next loss comes before a checkpoint (0.4 ms a read)."""
    what = None
    if not np.all(np.isfinite(losses)):
        what = f"the loss is {losses[~np.isfinite(losses)][0]}"
    elif weights:
        for name, value in engine.params().items():
            if not np.all(np.isfinite(value)):
                what = f"weight {name} is {value[~np.isfinite(value)].flat[0]}"
                break
    if what is None:
        return
    kept = (f"; the last good checkpoint (after pass {p}) is kept in "
            f"{out / rundir.CHECKPOINT}" if out else "")
    raise UserError(f"training diverged at pass {p + 1}, step {step} ({what}){kept}; lower "
                    f"the learning rate, e.g. --set train.lr={cfg.train.lr / 10:g}")


def _interrupted(signum: int, out: Path, at: TrainState, n: int, passes: int) -> RunInterrupted:
    where = (f"pass {at.passes_done + 1}/{passes}, sample {at.sample}/{n}" if at.sample else
             f"the end of pass {at.passes_done}/{passes}")
    return RunInterrupted(f"stopped by {signal.Signals(signum).name} at {where}; a "
                          f"resumable checkpoint is in {out}", signum)


def _pass_line(m: dict, passes: int) -> str:
    tr, te = m["train"], m["test"]
    return (f"pass {m['pass']:2d}/{passes}  train mse {tr['mse']:.2e} err {tr['error']:6.2%} "
            f"({tr['misses']:4d})  test mse {te['mse']:.2e} err {te['error']:6.2%} "
            f"({te['misses']:4d})  {m['seconds']:7.1f}s")


def resolve_out(out: str | os.PathLike | None, cfg: RunConfig) -> Path:
    """The run folder: --out, or a fresh timestamped one under runs/."""
    return Path(out) if out else rundir.default_out(cfg.preset, cfg.data.name, cfg.seed)


def fit_seeds(cfg: RunConfig, data: RunData, seeds, out_root: str | os.PathLike, *,
              overwrite: bool = False, progress: bool = True, log=print,
              threads: int | None = None) -> list[dict]:
    """Train `cfg` once per seed, each into out_root/seed-<k>/ as `fit` writes a run; returns
    the summaries in seed order.

    The fast engine trains the seeds together (`FastEngine.many`: the same patterns in the
    same order, one model per core at a time, `threads` cores); the reference engine, and
    runs whose patterns depend on the seed (shuffle, augment_shift, dropout), run one `fit`
    after another. Either way seed k's folder holds what `fit` with seed k writes, the same
    weights and metrics bit for bit (the timings aside), with a checkpoint after every pass
    that `fit(..., resume=True)` continues (an interrupted batch resumes seed by seed).
    """
    cfgs = [RunConfig.from_dict({**cfg.to_dict(), "seed": int(s)}) for s in seeds]
    if not cfgs or len({c.seed for c in cfgs}) != len(cfgs):
        raise UserError(f"seeds {list(seeds)}: give one or more distinct seeds, e.g. 0,1,2")
    root = Path(out_root)
    engine_name, why = choose_engine(cfg)
    if engine_name != "fast" or cfg.train.shuffle or cfg.train.augment_shift or \
            cfg.model.dropout:
        return [fit(c, data, root / f"seed-{c.seed}", overwrite=overwrite, progress=progress,
                    log=log).summary for c in cfgs]
    from lecun1989.engines.fast import FastEngine  # noqa: PLC0415

    outs = []
    try:
        for c in cfgs:
            outs.append(rundir.prepare(root / f"seed-{c.seed}", overwrite))
        batch = FastEngine.many(cfgs, [init_params(c.model, c.seed) for c in cfgs], threads)
        models = [batch.model(k) for k in range(len(cfgs))]
        states = [TrainState(0, 0, 0, "fast", data_sha256(data), {}, None, []) for _ in cfgs]
        records: list[list[dict]] = [[] for _ in cfgs]
        runs = list(zip(cfgs, outs, models, states, records, strict=True))
        for c, out, model, at, _ in runs:
            rundir.write_json(out / rundir.CONFIG, {
                **c.to_dict(), "engine_resolved": "fast",
                "engine_reason": f"{why}; {len(cfgs)} seeds trained together",
                "versions": versions(), "data_manifest": data.manifest})
            _save(out, c, model, at)
        log(f"engine: fast ({why}); seeds {', '.join(str(c.seed) for c in cfgs)} together")
        n, passes = len(data.train_labels), cfg.train.passes
        chunk = max(1, min(cfg.train.loss_every, n))
        step, t0 = 0, time.perf_counter()
        for p in range(passes):
            images, labels = pass_data(cfg, p, data.train_images, data.train_labels)
            batch.begin_pass(p, images, labels)
            bar = _progress(n, f"pass {p + 1}/{passes}, {len(cfgs)} seeds", progress)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                losses = batch.train_steps(images, labels, start, stop,
                                           lr_at(cfg, p, step, passes * n))
                step += stop - start
                for (c, out, model, at, _), loss in zip(runs, losses, strict=True):
                    at.step = step
                    at.history.append({"step": step, "pass": p, "loss": float(np.mean(loss))})
                    _check_finite(loss, model, p, step, out, c, weights=stop == n)
                if bar:
                    bar.update(stop - start)
            if bar:
                bar.close()
            train_seconds = time.perf_counter() - t0
            for c, out, model, at, recs in runs:
                metrics = {"pass": p + 1, "step": step, "seconds": round(train_seconds, 3),
                           **evaluate(model, data, c)}
                recs.append(metrics)
                log(f"seed {c.seed}: {_pass_line(metrics, passes)}")
                rundir.append_jsonl(out / rundir.METRICS, metrics)
                at.passes_done = p + 1
                _save(out, c, model, at)
            t0 = time.perf_counter() - train_seconds  # evaluation time is not training time
        summaries = [_summary(c, data, "fast", recs) for c, _, _, _, recs in runs]
        for (_, out, *_), summary in zip(runs, summaries, strict=True):
            rundir.write_json(out / rundir.SUMMARY, summary)
        return summaries
    finally:
        for out in outs:
            rundir.release(out)
