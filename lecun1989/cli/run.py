"""`lecun1989 reproduce` and `lecun1989 train`: train a configuration, write a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lecun1989 import paper
from lecun1989.config import PRESETS, apply_overrides, preset
from lecun1989.errors import CheckpointError, UserError


def add_run_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    p.add_argument("--preset", default=default_preset, help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--data", default=None,
                   help="usps | mnist | mnist-5k | digits (default: usps when found, else "
                        "the embedded mnist-5k)")
    p.add_argument("--data-dir", default=None,
                   help="folder with zip.train[.gz] and zip.test[.gz] (or set LECUN1989_DATA)")
    p.add_argument("--passes", type=int, default=None, help="passes through the training set")
    p.add_argument("--seed", type=int, default=None, help="fixes the initial weights")
    p.add_argument("--engine", default=None, choices=("auto", "reference", "fast"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.lr=0.01 --set table=full")
    p.add_argument("--out", default=None, help="run folder (default: runs/<time>-<preset>-...)")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parsers(sub) -> None:
    """Register `reproduce` and `train`."""
    p = sub.add_parser("reproduce", help="train a preset and hold it against the paper's table")
    add_run_args(p)
    add_resume_arg(p)
    add_tensorboard_arg(p)
    p.set_defaults(func=lambda args: cmd_train(args, compare=True))
    p = sub.add_parser("train", help="train with any configuration (--set key=value)")
    add_run_args(p)
    add_resume_arg(p)
    add_tensorboard_arg(p)
    p.set_defaults(func=lambda args: cmd_train(args, compare=False))


def add_tensorboard_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard logs into RUN_DIR/tensorboard (needs the optional "
                        "tensorboard package)")


def add_resume_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run with its own config (only --data-dir "
                        "and --quiet may be given too); ends as the uninterrupted run would")


def config_from_args(args):
    cfg = preset(args.preset)
    overrides = list(args.overrides)
    for flag, key in (("data", "data.name"), ("data_dir", "data.data_dir"),
                      ("passes", "train.passes"), ("seed", "seed"), ("engine", "engine")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return apply_overrides(cfg, overrides)


def resume_config(args):
    """The config an interrupted run was started with (from its checkpoint), --data-dir applied."""
    from lecun1989.train import checkpoint, rundir  # noqa: PLC0415

    flags = {"--preset": args.preset != "paper", "--set": args.overrides, "--data": args.data,
             "--passes": args.passes is not None, "--seed": args.seed is not None,
             "--engine": args.engine, "--out": args.out, "--overwrite": args.overwrite}
    given = [flag for flag, value in flags.items() if value]
    if given:
        raise UserError(f"--resume continues a run with its own config; leave out "
                        f"{', '.join(given)}")
    path = Path(args.resume) / rundir.CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"--resume {args.resume}: no {rundir.CHECKPOINT} in it; pass the "
                              "folder of an interrupted run")
    cfg = checkpoint.load(path)[0]
    if args.data_dir is not None:
        cfg.data.data_dir = args.data_dir
    return cfg


def cmd_train(args, compare: bool) -> int:
    from lecun1989.analysis.history import HistoryRecorder  # noqa: PLC0415
    from lecun1989.train.loop import RunInterrupted, fit, load_run_data, resolve_out  # noqa: PLC0415

    resume = getattr(args, "resume", None)
    cfg = resume_config(args) if resume else config_from_args(args)
    data = load_run_data(cfg)
    print(f"data: {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test "
          f"digits, {cfg.model.input_size}x{cfg.model.input_size}")
    if data.note:
        print(f"note: {data.note}")
    out = Path(resume) if resume else resolve_out(args.out, cfg)
    print(f"preset: {cfg.preset}, seed {cfg.seed}, {cfg.train.passes} passes, "
          f"optimizer {cfg.train.optimizer}; writing {out}")
    callbacks = [HistoryRecorder(out, cfg)]  # loss.jsonl, params.jsonl: see analysis/history.py
    if getattr(args, "tensorboard", False):
        from lecun1989.analysis.tensorboard import TensorBoardLogger  # noqa: PLC0415

        callbacks.append(TensorBoardLogger(out, cfg))
    try:
        run = fit(cfg, data, out, overwrite=args.overwrite, resume=bool(resume),
                  progress=not args.quiet, callbacks=callbacks)
    except RunInterrupted as e:  # a checkpoint was saved: say how to go on, in one line
        print(f"lecun1989: {e}; resume with: lecun1989 {args.command} --resume {out}",
              file=sys.stderr)
        return 128 + e.signum
    if compare:
        print(comparison_table(run.summary))
    if getattr(args, "tensorboard", False):
        from lecun1989.analysis.tensorboard import add_pictures  # noqa: PLC0415

        add_pictures(out)
        print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    print(f"done in {run.summary['seconds']:.1f} s of training; results in {out}")
    return 0


def _pct(x) -> str:
    return f"{x:.2%}"


def comparison_table(summary: dict) -> str:
    """The paper's results (NC89 §5) beside this run's."""
    f, ref = summary["final"], paper.RESULTS
    rows = [("train error", _pct(ref["train"]["error"]) + f" ({ref['train']['misses']})",
             _pct(f["train"]["error"]) + f" ({f['train']['misses']})"),
            ("train MSE", f"{ref['train']['mse']:.1e}", f"{f['train']['mse']:.2e}"),
            ("test error", _pct(ref["test"]["error"]) + f" ({ref['test']['misses']})",
             _pct(f["test"]["error"]) + f" ({f['test']['misses']})"),
            ("test MSE", f"{ref['test']['mse']:.1e}", f"{f['test']['mse']:.2e}"),
            ("reject for 1% test error", _pct(ref["test"]["reject_for_1pct"]),
             _pct(f["test"]["reject_for_1pct"]))]
    data = summary["data"]
    lines = [f"{'':26s}{'paper (USPS)':>16s}{'this run (' + data['name'] + ')':>22s}"]
    lines += [f"{a:26s}{b:>16s}{c:>22s}" for a, b, c in rows]
    lines.append("MSE: mean over outputs and patterns, targets +-1, no factor 1/2.")
    return "\n".join(lines)
