"""The `lecun1989` command line: reproduce, train, evaluate, info.

User mistakes print one line on stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from lecun1989 import paper
from lecun1989.config import PRESETS, apply_overrides, preset
from lecun1989.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes in one line."""

    def error(self, message):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _run_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="lecun1989", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("reproduce", help="train a preset and hold it against the paper's table")
    _run_args(p)
    p = sub.add_parser("train", help="train with any configuration (--set key=value)")
    _run_args(p)
    p = sub.add_parser("evaluate", help="metrics of a checkpoint on its data")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--data", default=None, help="evaluate on another data source")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("info", help="units, connections, parameters and MACs of a preset")
    p.add_argument("--preset", default="paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _config(args):
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

    cfg = _config(args)
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


def cmd_evaluate(args) -> int:
    from lecun1989.train import checkpoint  # noqa: PLC0415
    from lecun1989.train.loop import evaluate, load_run_data  # noqa: PLC0415
    from lecun1989.engines.reference import ReferenceEngine  # noqa: PLC0415

    cfg, params, _, _ = checkpoint.load(args.checkpoint)
    if args.data:
        cfg.data.name = args.data
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    data = load_run_data(cfg)
    metrics = evaluate(ReferenceEngine(cfg, params), data, cfg)
    if args.json:
        print(json.dumps({"data": data.name, **metrics}))
        return 0
    for split in ("train", "test"):
        m = metrics[split]
        print(f"{split:5s} ({data.name}, {m['n']} digits): error {m['error']:.2%} "
              f"({m['misses']} misses), mse {m['mse']:.3e}, "
              f"reject for 1% error {m['reject_for_1pct']:.1%}")
    return 0


def cmd_info(args) -> int:
    from lecun1989.model import Net1989, count  # noqa: PLC0415

    cfg = apply_overrides(preset(args.preset), args.overrides)
    counts = count(Net1989(cfg.model))
    if args.json:
        print(json.dumps(counts))
        return 0
    ref = {"units": paper.UNITS, "connections": paper.CONNECTIONS,
           "parameters": paper.PARAMETERS}
    print(f"Net1989, preset {cfg.preset}")
    for key, value in counts.items():
        mark = f"  (paper: {ref[key]:,})" if key in ref else ""
        print(f"  {key:12s}{value:>10,}{mark}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lecun1989` command."""
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("reproduce", "train"):
            return cmd_train(args, compare=args.command == "reproduce")
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_info(args)
    except UserError as e:
        print(f"lecun1989: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lecun1989: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
