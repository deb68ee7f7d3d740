"""`lecun1989 plot RUN_DIR`: every picture of a run as PNG files."""

from __future__ import annotations


def add_parsers(sub) -> None:
    """Register `plot`."""
    p = sub.add_parser("plot", help="draw a run's pictures (PNG) into RUN_DIR/plots")
    p.add_argument("run_dir", help="a run folder written by `lecun1989 train`")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR/plots)")
    p.add_argument("--digit", type=int, default=0,
                   help="which test digit to show the feature maps of (default: 0)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from lecun1989.analysis.plots import load_run, plot_run  # noqa: PLC0415

    view = load_run(args.run_dir)
    for warning in view.warnings:
        print(f"warning: {warning}")
    paths, skipped = plot_run(args.run_dir, args.out, args.digit, view=view)
    for path in paths.values():
        print(path)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0
