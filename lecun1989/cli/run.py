"""`lecun1989 reproduce` and `lecun1989 train`: train a configuration, write a run folder."""

from __future__ import annotations

import argparse

from lecun1989 import paper
from lecun1989.config import PRESETS, apply_overrides, preset


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
    p.set_defaults(func=lambda args: cmd_train(args, compare=True))
    p = sub.add_parser("train", help="train with any configuration (--set key=value)")
    add_run_args(p)
    p.set_defaults(func=lambda args: cmd_train(args, compare=False))


def config_from_args(args):
    cfg = preset(args.preset)
    overrides = list(args.overrides)
    for flag, key in (("data", "data.name"), ("data_dir", "data.data_dir"),
                      ("passes", "train.passes"), ("seed", "seed"), ("engine", "engine")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return apply_overrides(cfg, overrides)


def cmd_train(args, compare: bool) -> int:
    from lecun1989.train.loop import fit, load_run_data, resolve_out  # noqa: PLC0415

    cfg = config_from_args(args)
    data = load_run_data(cfg)
    print(f"data: {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test "
          f"digits, {cfg.model.input_size}x{cfg.model.input_size}")
    if data.note:
        print(f"note: {data.note}")
    out = resolve_out(args.out, cfg)
    print(f"preset: {cfg.preset}, seed {cfg.seed}, {cfg.train.passes} passes, "
          f"optimizer {cfg.train.optimizer}; writing {out}")
    run = fit(cfg, data, out, overwrite=args.overwrite, progress=not args.quiet)
    if compare:
        print(comparison_table(run.summary))
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
