"""`lecun1989 reproduce` and `lecun1989 train`: train a configuration, write a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lecun1989 import paper
from lecun1989.cli.main import help_formatter
from lecun1989.config import PRESETS, apply_flags, preset
from lecun1989.errors import UserError

SEEDS_HELP = ("several models, one per seed, trained side by side into RUN_DIR/seed-<s>/: "
              "0-4 (five seeds), 0,3,7 (three), 5 (seed 5 alone; a bare number is one seed in "
              "every command)")


def add_run_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    p.add_argument("--preset", default=default_preset,
                   help=f"the configuration to start from: {', '.join(PRESETS)} "
                        "(default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="usps | mnist | mnist-5k | digits (default: usps when found, else "
                        "the embedded mnist-5k)")
    p.add_argument("--data-dir", default=None,
                   help="folder with zip.train[.gz] and zip.test[.gz] (default: "
                        "$LECUN1989_DATA, else the download cache)")
    p.add_argument("--passes", type=int, default=None,
                   help="passes through the training set (default: the preset's; paper: 23)")
    p.add_argument("--seed", type=int, default=None,
                   help="fixes the initial weights, and any shuffling (default: the preset's, 0)")
    p.add_argument("--seeds", default=None, metavar="SEEDS", help=SEEDS_HELP)
    p.add_argument("--engine", default=None, choices=("auto", "reference", "fast", "lanes"),
                   help="auto: the fastest engine that supports the configuration, and it says "
                        "why; reference: PyTorch, every option; fast: compiled, one model per "
                        "core; lanes: compiled, many models in lockstep (auto's choice for 4 "
                        "seeds or more) (default: auto)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="where the reference engine computes: auto is CUDA when torch sees a "
                        "GPU, as the original notebook's get_device(); the fast engine is CPU "
                        "code (default: auto)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.lr=0.01 --set table=full "
                        "(`lecun1989 config` lists every key)")
    p.add_argument("--out", default=None,
                   help="run folder (default: runs/<time>-<preset>-<data>-s<seed>)")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse a non-empty --out folder, replacing its run once the new one "
                        "has started")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parsers(sub) -> None:
    """Register `reproduce` and `train`."""
    for name, text, compare in (
            ("reproduce", "train a preset (default: paper) and hold it against the paper's "
                          "table", True),
            ("train", "train any configuration (--set key=value); no comparison table", False)):
        p = sub.add_parser(name, help=text, description=text, formatter_class=help_formatter())
        add_run_args(p)
        add_resume_arg(p)
        add_tensorboard_arg(p)
        p.set_defaults(func=lambda args, compare=compare: cmd_train(args, compare=compare))


def add_tensorboard_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard logs into each run folder's tensorboard/ "
                        "(needs the optional tensorboard package)")


def add_resume_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run (one model or several seeds) with its own "
                        "config (only --data-dir, --quiet and --tensorboard may be given too); "
                        "it ends as the uninterrupted run would, bit for bit")


# flag -> the config key it sets (a flag and a --set of that key may not disagree)
FLAG_KEYS = {"data": "data.name", "data_dir": "data.data_dir", "passes": "train.passes",
             "seed": "seed", "engine": "engine", "device": "device"}


def config_from_args(args):
    """The preset, the --set overrides, then the flags (config.apply_flags: a flag and a --set
    of the same key that disagree are refused, naming both)."""
    if getattr(args, "seeds", None) is not None and (
            args.seed is not None or any(o.split("=", 1)[0].strip() == "seed"
                                         for o in args.overrides)):
        raise UserError("--seeds and --seed (or --set seed=) both choose seeds; give only "
                        "--seeds")
    flags = {key: ("--" + flag.replace("_", "-"), getattr(args, flag, None))
             for flag, key in FLAG_KEYS.items()}
    return apply_flags(preset(args.preset), list(args.overrides), flags)


def _resume_config(args):
    """The config an interrupted run was started with (from its checkpoint), --data-dir applied."""
    from lecun1989.train.loop import resume_config

    flags = {"--preset": args.preset != "paper", "--set": args.overrides, "--data": args.data,
             "--passes": args.passes is not None, "--seed": args.seed is not None,
             "--seeds": args.seeds is not None, "--engine": args.engine,
             "--device": args.device, "--out": args.out,
             "--overwrite": args.overwrite}
    given = [flag for flag, value in flags.items() if value]
    if given:
        raise UserError(f"--resume continues a run with its own config; leave out "
                        f"{', '.join(given)}")
    cfg = resume_config(args.resume)
    if args.data_dir is not None:
        cfg.data.data_dir = args.data_dir
    return cfg


def cmd_train(args, compare: bool) -> int:
    from lecun1989.analysis.history import HistoryRecorder
    from lecun1989.train.loop import (
        SEEDS,
        RunInterrupted,
        fit,
        load_run_data,
        parse_seeds,
        resolve_out,
    )

    resume = args.resume
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    cfg = _resume_config(args) if resume else config_from_args(args)
    tensorboard = args.tensorboard
    if tensorboard:
        from lecun1989.analysis.tensorboard import TensorBoardLogger, check_available

        check_available()
    data = load_run_data(cfg)
    print(f"data: {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test "
          f"digits, {cfg.model.input_size}x{cfg.model.input_size}")
    if data.note:
        print(f"note: {data.note}")
    out = Path(resume) if resume else resolve_out(args.out, cfg, seeds)
    many = seeds is not None or (resume and (out / SEEDS).is_file())
    who = (f"seeds {args.seeds}" if seeds is not None else "seeds of the run" if many
           else f"seed {cfg.seed}")
    print(f"preset: {cfg.preset}, {who}, {cfg.train.passes} passes, optimizer "
          f"{cfg.train.optimizer}; writing {out}")
    if seeds is not None and len(seeds) == 1 and args.seeds.strip().isdigit():
        print(f"note: --seeds {args.seeds} is the one seed {seeds[0]}; for {seeds[0]} seeds "
              f"from 0 write --seeds 0-{max(seeds[0] - 1, 0)}")

    def callbacks(model_cfg, model_out):  # loss.jsonl, params.jsonl: analysis/history.py
        found = [HistoryRecorder(model_out, model_cfg)]
        if tensorboard:
            found.append(TensorBoardLogger(model_out, model_cfg))
        return found

    try:
        result = fit(cfg, data, out, seeds=seeds, overwrite=args.overwrite,
                     resume=bool(resume), progress=not args.quiet, callbacks=callbacks)
    except RunInterrupted as e:  # a checkpoint was saved: say how to go on, in one line
        print(f"lecun1989: {e}; resume with: lecun1989 {args.command} --resume {out}",
              file=sys.stderr)
        return 128 + e.signum
    runs = result if isinstance(result, list) else [result]
    if tensorboard:
        from lecun1989.analysis.tensorboard import add_pictures

        for run in runs:
            add_pictures(run.out)
        print(f"TensorBoard: tensorboard --logdir {out}")
    if many:
        from lecun1989.train import rundir

        summary = json.loads((out / rundir.SUMMARY).read_text())
        if compare:
            print(comparison_table(summary))
        print(f"done: {len(runs)} seeds, {summary['seconds']:.1f} s of training; results in "
              f"{out} (each seed in {out}/seed-<s>/, the spread in {out / rundir.SUMMARY})")
        return 0
    if compare:
        print(comparison_table(runs[0].summary))
    print(f"done in {runs[0].summary['seconds']:.1f} s of training; results in {out}")
    return 0


def _cell(summary: dict, split: str, key: str) -> str:
    """One run's value, or the median [min, max] over seeds when several ran."""
    from lecun1989.train.metrics import format_metric  # (numpy: not while parsing flags)

    if "aggregate" in summary:
        a = summary["aggregate"][split][key]
        return (f"{format_metric(key, a['median'])} [{format_metric(key, a['min'])}, "
                f"{format_metric(key, a['max'])}]")
    value = format_metric(key, summary["final"][split][key])
    if key == "error":
        value += f" ({summary['final'][split]['misses']})"
    return value


# (label, split, metric): the rows of the paper-versus-run table (NC89 §5)
COMPARED = (("train error", "train", "error"), ("train MSE", "train", "mse"),
            ("test error", "test", "error"), ("test MSE", "test", "mse"),
            ("reject for 1% test error", "test", "reject_for_1pct"))


def comparison_table(summary: dict) -> str:
    """The paper's results (NC89 §5) beside this run's (or the median and range of seeds)."""
    from lecun1989.train.metrics import format_metric

    rows = []
    for label, split, key in COMPARED:
        ours = paper.RESULTS[split]
        theirs = format_metric(key, ours[key]) + (f" ({ours['misses']})" if key == "error"
                                                   else "")
        rows.append((label, theirs, _cell(summary, split, key)))
    name = summary["data"]["name"]
    head = (f"median [min, max] of {len(summary['seeds'])} seeds ({name})"
            if "aggregate" in summary else f"this run ({name})")
    width = max(22, len(head) + 2, *(len(c) + 2 for *_, c in rows))
    lines = [f"{'':26s}{'paper (USPS)':>16s}{head:>{width}s}"]
    lines += [f"{a:26s}{b:>16s}{c:>{width}s}" for a, b, c in rows]
    lines.append("MSE: mean over outputs and patterns, targets +-1, no factor 1/2.")
    return "\n".join(lines)
