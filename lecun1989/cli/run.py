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
    for name, text, compare in (
            ("reproduce", "train a preset and hold it against the paper's table", True),
            ("train", "train with any configuration (--set key=value)", False)):
        p = sub.add_parser(name, help=text)
        add_run_args(p)
        add_resume_arg(p)
        add_tensorboard_arg(p)
        p.add_argument("--seeds", type=int, default=1, metavar="K",
                       help="train K models, seeds S..S+K-1 (S from --seed), together on the "
                            "fast engine; summary.json then holds every run and an aggregate")
        p.set_defaults(func=lambda args, compare=compare: cmd_train(args, compare=compare))


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
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: give the number of seeds, 1 or more")
    if args.seeds > 1 and (resume or getattr(args, "tensorboard", False)):
        raise UserError("--seeds K trains several runs at once; it does not combine with "
                        "--resume or --tensorboard (resume or log each seed-<k> run alone)")
    cfg = resume_config(args) if resume else config_from_args(args)
    data = load_run_data(cfg)
    print(f"data: {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test "
          f"digits, {cfg.model.input_size}x{cfg.model.input_size}")
    if data.note:
        print(f"note: {data.note}")
    out = Path(resume) if resume else resolve_out(args.out, cfg)
    print(f"preset: {cfg.preset}, seed {cfg.seed}, {cfg.train.passes} passes, "
          f"optimizer {cfg.train.optimizer}; writing {out}")
    if args.seeds > 1:
        return _train_seeds(cfg, data, out, args, compare)
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


def _train_seeds(cfg, data, out: Path, args, compare: bool) -> int:
    """Train seeds S..S+K-1 together; out/summary.json holds the runs and their aggregate."""
    from lecun1989.analysis.stats import aggregate  # noqa: PLC0415
    from lecun1989.train import rundir  # noqa: PLC0415
    from lecun1989.train.loop import fit_seeds  # noqa: PLC0415

    seeds = list(range(cfg.seed, cfg.seed + args.seeds))
    runs = fit_seeds(cfg, data, seeds, out, overwrite=args.overwrite, progress=not args.quiet)
    summary = {"preset": cfg.preset, "seeds": seeds, "data": runs[0]["data"],
               "engine": runs[0]["engine"], "seconds": sum(r["seconds"] for r in runs),
               "mse_convention": runs[0]["mse_convention"],
               "runs": [{"seed": s, "dir": f"seed-{s}", **r} for s, r in zip(seeds, runs,
                                                                               strict=True)],
               "aggregate": aggregate(runs)}
    rundir.write_json(out / rundir.SUMMARY, summary)
    if compare:
        print(comparison_table(summary))
    print(f"done: {len(seeds)} seeds, {summary['seconds']:.1f} s of training in all; runs in "
          f"{out}/seed-<k>, the aggregate in {out / rundir.SUMMARY}")
    return 0


def _pct(x) -> str:
    return f"{x:.2%}"


def _cell(summary: dict, split: str, key: str, fmt) -> str:
    """One run's value, or the median [min, max] over seeds when several ran."""
    if "aggregate" in summary:
        a = summary["aggregate"][split][key]
        return f"{fmt(a['median'])} [{fmt(a['min'])}, {fmt(a['max'])}]"
    value = fmt(summary["final"][split][key])
    if key == "error":
        value += f" ({summary['final'][split]['misses']})"
    return value


def comparison_table(summary: dict) -> str:
    """The paper's results (NC89 §5) beside this run's (or the median and range of seeds)."""
    ref = paper.RESULTS
    mse = "{:.2e}".format
    rows = [("train error", _pct(ref["train"]["error"]) + f" ({ref['train']['misses']})",
             _cell(summary, "train", "error", _pct)),
            ("train MSE", f"{ref['train']['mse']:.1e}", _cell(summary, "train", "mse", mse)),
            ("test error", _pct(ref["test"]["error"]) + f" ({ref['test']['misses']})",
             _cell(summary, "test", "error", _pct)),
            ("test MSE", f"{ref['test']['mse']:.1e}", _cell(summary, "test", "mse", mse)),
            ("reject for 1% test error", _pct(ref["test"]["reject_for_1pct"]),
             _cell(summary, "test", "reject_for_1pct", _pct))]
    name = summary["data"]["name"]
    head = (f"median [min, max] of {len(summary['seeds'])} seeds ({name})"
            if "aggregate" in summary else f"this run ({name})")
    width = max(22, len(head) + 2, *(len(c) + 2 for *_, c in rows))
    lines = [f"{'':26s}{'paper (USPS)':>16s}{head:>{width}s}"]
    lines += [f"{a:26s}{b:>16s}{c:>{width}s}" for a, b, c in rows]
    lines.append("MSE: mean over outputs and patterns, targets +-1, no factor 1/2.")
    return "\n".join(lines)
