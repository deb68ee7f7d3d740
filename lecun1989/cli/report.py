"""`lecun1989 report RUN_DIR [RUN_DIR ...]`: report.md and a self-contained report.html."""

from __future__ import annotations

from lecun1989.cli.main import help_formatter
from lecun1989.cli.plot import add_digit_arguments


def add_parsers(sub) -> None:
    """Register `report`."""
    p = sub.add_parser("report", help="write report.md and report.html for one or more runs "
                                      "(several: the spread over them, e.g. seeds)",
        formatter_class=help_formatter())
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders")
    p.add_argument("--out", default=None,
                   help="folder for the report (default: the run folder; for several runs, "
                        "a `report` folder beside them)")
    add_digit_arguments(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from lecun1989.analysis.report import write_report

    md, page = write_report(args.run_dirs, args.out, args.digit, index=args.index)
    print(md)
    print(page)
    return 0
