"""The training driver shared by every engine: passes, evaluation, metrics, run directory.

    cfg = preset("paper"); data = load_run_data(cfg)
    summary = fit(cfg, data, out="runs/demo")

NC89 §4: one pattern per update, always in the same order, 23 passes; after each pass
the train and test sets are evaluated (MSE, error rate, misses, reject for 1% error).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from lecun1989 import data as datasets
from lecun1989.config import RunConfig
from lecun1989.engines import choose_engine, make_engine
from lecun1989.errors import UserError
from lecun1989.model.net import init_params
from lecun1989.train import checkpoint, rundir
from lecun1989.train.metrics import MSE_CONVENTION, evaluate_outputs

LIBRARIES = ("lecun1989", "torch", "numpy", "numba", "llvmlite", "scikit-learn", "mlxtend",
             "safetensors")


def versions() -> dict[str, str]:
    """Python, platform and library versions (results drift with them)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


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


def fit(cfg: RunConfig, data: RunData, out: str | os.PathLike | None = None, *,
        overwrite: bool = False, progress: bool = True, log=print, callbacks=()) -> Run:
    """Train from the seed's initial weights; write the run directory if `out` is given.

    The summary is also written as summary.json. Callbacks may define
    `on_steps(step, pass_index, losses, engine)` and `on_pass(pass_index, metrics, engine)`.
    """
    engine_name, why = choose_engine(cfg)
    out = rundir.prepare(out, overwrite) if out is not None else None
    config = {**cfg.to_dict(), "engine_resolved": engine_name, "engine_reason": why,
              "versions": versions(), "data_manifest": data.manifest}
    if out:
        rundir.write_json(out / rundir.CONFIG, config)
    log(f"engine: {engine_name} ({why})")
    engine = make_engine(engine_name, cfg, init_params(cfg.model, cfg.seed))
    n, passes = len(data.train_labels), cfg.train.passes
    chunk = max(1, min(cfg.train.loss_every, n))
    history, records, step, t0 = [], [], 0, time.perf_counter()
    for p in range(passes):
        images, labels = pass_data(cfg, p, data.train_images, data.train_labels)
        engine.begin_pass(p, images, labels)
        bar = _progress(n, f"pass {p + 1}/{passes}", progress)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            lr = lr_at(cfg, p, step, passes * n)
            losses = engine.train_steps(images, labels, start, stop, lr)
            step += stop - start
            history.append({"step": step, "pass": p, "loss": float(np.mean(losses))})
            if not np.all(np.isfinite(losses)):
                raise UserError(f"training diverged at pass {p + 1}, step {step} (loss is "
                                f"{losses[~np.isfinite(losses)][0]}); lower the learning rate "
                                "with --set train.lr=...")
            for cb in callbacks:
                if hasattr(cb, "on_steps"):
                    cb.on_steps(step, p, losses, engine)
            if bar:
                bar.update(stop - start)
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if bar:
            bar.close()
        train_seconds = time.perf_counter() - t0
        metrics = {"pass": p + 1, "step": step, "seconds": round(train_seconds, 3),
                   **evaluate(engine, data, cfg)}
        t0 = time.perf_counter() - train_seconds  # evaluation time is not training time
        records.append(metrics)
        log(_pass_line(metrics, passes))
        if out:
            rundir.append_jsonl(out / rundir.METRICS, metrics)
        for cb in callbacks:
            if hasattr(cb, "on_pass"):
                cb.on_pass(p, metrics, engine)
    summary = {
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
    if out:
        checkpoint.save(out / rundir.CHECKPOINT, cfg, engine.params(),
                        extra={f"optimizer/{k}": v for k, v in engine.optimizer_state().items()},
                        meta={"pass": passes, "step": step})
        rundir.write_json(out / rundir.SUMMARY, summary)
    return Run(summary, engine, out, history)


def _pass_line(m: dict, passes: int) -> str:
    tr, te = m["train"], m["test"]
    return (f"pass {m['pass']:2d}/{passes}  train mse {tr['mse']:.2e} err {tr['error']:6.2%} "
            f"({tr['misses']:4d})  test mse {te['mse']:.2e} err {te['error']:6.2%} "
            f"({te['misses']:4d})  {m['seconds']:7.1f}s")


def resolve_out(out: str | os.PathLike | None, cfg: RunConfig) -> Path:
    """The run folder: --out, or a fresh timestamped one under runs/."""
    return Path(out) if out else rundir.default_out(cfg.preset, cfg.data.name, cfg.seed)
