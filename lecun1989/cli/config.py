"""`lecun1989 config`: every config key with its value, type, allowed values and meaning."""

from __future__ import annotations

import json

from lecun1989.cli.main import help_formatter
from lecun1989.config import PRESETS, apply_overrides, describe, preset


def add_parsers(sub) -> None:
    """Register `config`."""
    p = sub.add_parser("config", help="list every config key: value, type, allowed values, "
                                      "meaning (the keys --set takes)",
                       description="List every key `--set KEY=VALUE` takes, with its value in "
                                   "a preset (after any --set), its type, the values allowed "
                                   "and what it means.",
                       formatter_class=help_formatter())
    p.add_argument("--preset", default="paper", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key first, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON list of objects")
    p.set_defaults(func=cmd_config)


def cmd_config(args) -> int:
    rows = describe(apply_overrides(preset(args.preset), args.overrides))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"preset {args.preset}: set any key with --set KEY=VALUE (a bare NAME works when "
          "it is unique)")
    for row in rows:
        print(f"{row['key']} = {json.dumps(row['value'])}  ({row['type']}; {row['allowed']})")
        print(f"    {row['meaning']}")
    return 0
