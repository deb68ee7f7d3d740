"""`lecun1989 info`: units, connections, free parameters and MACs, beside the paper's."""

from __future__ import annotations

import json

from lecun1989 import paper
from lecun1989.cli.main import help_formatter
from lecun1989.config import PRESETS, apply_overrides, preset


def add_parsers(sub) -> None:
    """Register `info`."""
    p = sub.add_parser("info", help="units, connections, parameters and MACs of a preset",
                       description="Count the network's units, connections, free parameters "
                                   "and multiply-adds, beside the paper's 1256 / 64,660 / 9760.",
                       formatter_class=help_formatter())
    p.add_argument("--preset", default="paper", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set table=full (repeatable; "
                        "`lecun1989 config` lists the keys)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from lecun1989.model import Net1989, count

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
