"""The `lecun1989` command line. Each command lives in its own module of this package.

User mistakes print one line on stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from lecun1989.cli import demo, evaluate, info, plot, predict, report, run, sweep
from lecun1989.errors import UserError

EXIT_USER_ERROR = 2
COMMANDS = (run, evaluate, info, sweep, plot, report, predict, demo)  # each has add_parsers(sub)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes in one line."""

    def error(self, message):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="lecun1989",
                     description="LeCun et al. 1989, reproduced: train, evaluate, inspect.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMANDS:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lecun1989` command."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as e:
        print(f"lecun1989: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lecun1989: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
