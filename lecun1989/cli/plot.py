"""`lecun1989 plot RUN_DIR`: every picture of a run as PNG files (and one animated GIF)."""

from __future__ import annotations

from lecun1989.cli.main import help_formatter


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
                                    "as a GIF) into RUN_DIR/plots",
        formatter_class=help_formatter())
    p.add_argument("run_dir", help="a run folder written by `lecun1989 train`; a folder of "
                                   "several seeds: every seed's pictures in its own folder, "
                                   "and their curves overlaid in RUN_DIR/plots")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR/plots)")
    add_digit_arguments(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from pathlib import Path

    from lecun1989.analysis.plots import save
    from lecun1989.analysis.timeline import overlay_run_dirs
    from lecun1989.train.runs import seed_folders

    folders = seed_folders(Path(args.run_dir))
    if folders is None:
        return _plot_one(args, args.run_dir, args.out)
    for seed, folder in folders.items():
        print(f"seed {seed}:")
        _plot_one(args, folder, Path(args.out) / f"seed-{seed}" if args.out else None)
    overlay = Path(args.out or Path(args.run_dir) / "plots") / "overlay.png"
    print(save(overlay_run_dirs(list(folders.values())), overlay))
    return 0


def _plot_one(args, run_dir, out) -> int:
    from lecun1989.analysis.plots import load_run, plot_run

    view = load_run(run_dir)
    for warning in view.warnings:
        print(f"warning: {warning}")
    paths, skipped = plot_run(run_dir, out, args.digit, view=view, index=args.index)
    for path in paths.values():
        print(path)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0
