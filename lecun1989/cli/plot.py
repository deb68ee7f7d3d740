"""`lecun1989 plot RUN_DIR`: every picture of a run as PNG files (and one animated GIF)."""

from __future__ import annotations


def add_digit_arguments(p) -> None:
    """--digit CLASS / --index N: which test digit the feature maps and `learning` show."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--digit", type=int, default=None, metavar="CLASS",
                       help="show the first test digit of this class, 0-9 (e.g. --digit 3)")
    which.add_argument("--index", type=int, default=None, metavar="N",
                       help="show test digit number N (default: 0, the first)")


def add_parsers(sub) -> None:
    """Register `plot`."""
    p = sub.add_parser("plot", help="draw a run's pictures (PNG, and the kernels pass by pass "
                                    "as a GIF) into RUN_DIR/plots")
    p.add_argument("run_dir", help="a run folder written by `lecun1989 train`")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR/plots)")
    add_digit_arguments(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from lecun1989.analysis.plots import load_run, plot_run

    view = load_run(args.run_dir)
    for warning in view.warnings:
        print(f"warning: {warning}")
    paths, skipped = plot_run(args.run_dir, args.out, args.digit, view=view, index=args.index)
    for path in paths.values():
        print(path)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0
