"""`lecun1989 evaluate RUN_DIR`: the paper's metrics for a trained network (or each seed's)."""

from __future__ import annotations

import json
from pathlib import Path

from lecun1989.cli.main import help_formatter


def add_parsers(sub) -> None:
    """Register `evaluate`."""
    p = sub.add_parser("evaluate", help="the paper's metrics of a trained run on its data",
                       description="The paper's metrics (error, misses, MSE, reject rate for "
                                   "1% error) of a run folder's final weights, on the data it "
                                   "was trained on (or --data). A folder of several seeds: "
                                   "every seed, then their median [min, max].",
                       formatter_class=help_formatter())
    p.add_argument("checkpoint", help="a run folder (one model or several seeds) or a "
                                      "model.safetensors")
    p.add_argument("--data", default=None,
                   help="evaluate on another data source (default: the run's own)")
    p.add_argument("--data-dir", default=None,
                   help="folder with zip.train[.gz] and zip.test[.gz] (default: the run's, "
                        "else $LECUN1989_DATA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)


def evaluate_checkpoint(path: Path, data_name: str | None, data_dir: str | None):
    """(data name, metrics) of one checkpoint, computed by the model alone (no engine)."""
    from lecun1989.model.net import Net1989
    from lecun1989.train import checkpoint
    from lecun1989.train.loop import evaluate, load_run_data

    cfg, params, _, _ = checkpoint.load(path)
    if data_name:
        cfg.data.name = data_name
    if data_dir:
        cfg.data.data_dir = data_dir
    data = load_run_data(cfg)
    net = Net1989(cfg.model)
    net.load_numpy_params(params)
    return data.name, evaluate(net.predict_numpy, data, cfg)


def cmd_evaluate(args) -> int:
    from lecun1989.stats import describe
    from lecun1989.train.runs import seed_folders

    folders = seed_folders(Path(args.checkpoint))
    if folders is None:
        name, metrics = evaluate_checkpoint(Path(args.checkpoint), args.data, args.data_dir)
        if args.json:
            print(json.dumps({"data": name, **metrics}))
        else:
            for split in ("train", "test"):
                print(_line(split, name, metrics[split]))
        return 0
    results = {seed: evaluate_checkpoint(folder, args.data, args.data_dir)
               for seed, folder in folders.items()}
    name = next(iter(results.values()))[0]
    spread = {split: {key: describe([m[split][key] for _, m in results.values()])
                      for key in ("error", "misses", "mse", "reject_for_1pct")}
              for split in ("train", "test")}
    if args.json:
        print(json.dumps({"data": name, "seeds": {str(s): m for s, (_, m) in results.items()},
                          "aggregate": spread}))
        return 0
    for seed, (_, metrics) in results.items():
        for split in ("train", "test"):
            print(f"seed {seed:<4d} " + _line(split, name, metrics[split]))
    for split in ("train", "test"):
        error, reject = (_spread(key, spread[split][key]) for key in ("error", "reject_for_1pct"))
        print(f"{len(results)} seeds, {split:5s}: error median {error}, reject for 1% error "
              f"median {reject}")
    return 0


def _line(split: str, name: str, m: dict) -> str:
    from lecun1989.train.metrics import format_metric  # (numpy: not while parsing flags)

    return (f"{split:5s} ({name}, {m['n']} digits): error {format_metric('error', m['error'])} "
            f"({m['misses']} misses), mse {format_metric('mse', m['mse'])}, reject for 1% "
            f"error {format_metric('reject_for_1pct', m['reject_for_1pct'])}")


def _spread(key: str, d: dict) -> str:
    """'median [min, max]' of a `describe` result, in the metric's format."""
    from lecun1989.train.metrics import format_metric

    return (f"{format_metric(key, d['median'])} [{format_metric(key, d['min'])}, "
            f"{format_metric(key, d['max'])}]")
