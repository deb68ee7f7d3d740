"""`lecun1989 evaluate CHECKPOINT`: the paper's metrics for a trained network."""

from __future__ import annotations

import json

from lecun1989.cli.main import help_formatter


def add_parsers(sub) -> None:
    """Register `evaluate`."""
    p = sub.add_parser("evaluate", help="metrics of a checkpoint on its data",
                       description="Error, MSE and the rejection for 1% error of a trained "
                                   "network, on the train and test digits of its run (or of "
                                   "--data).",
                       formatter_class=help_formatter())
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--data", default=None,
                   help="evaluate on another data source (default: the run's own)")
    p.add_argument("--data-dir", default=None,
                   help="folder with zip.train[.gz] and zip.test[.gz] (default: the run's, "
                        "or LECUN1989_DATA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from lecun1989.engines.reference import ReferenceEngine  # noqa: PLC0415
    from lecun1989.train import checkpoint  # noqa: PLC0415
    from lecun1989.train.loop import evaluate, load_run_data  # noqa: PLC0415

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
