"""`lecun1989 demo RUN_DIR [--out FILE]`: a self-contained page to draw a digit and watch
every layer (analysis/demo.py)."""

from __future__ import annotations

from pathlib import Path

from lecun1989.cli.main import help_formatter


def add_parsers(sub) -> None:
    """Register `demo`."""
    p = sub.add_parser(
        "demo", help="write one HTML page to draw a digit and watch every layer think",
        description="Write one self-contained HTML page holding the run's weights after every "
                    "pass: draw a digit (mouse or finger) and watch H1, H2, H3 and the outputs "
                    "respond, slide through the passes, step through the test digits it got "
                    "wrong. No network needed: open it from a file or put it on any web server.",
        formatter_class=help_formatter())
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (from `lecun1989 train`)")
    p.add_argument("--seed", type=int, default=None,
                   help="in a folder of several seeds, the seed whose network the page holds "
                        "(default: the first)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the page (default: RUN_DIR/demo.html)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from lecun1989.analysis.demo import write_demo
    from lecun1989.cli.predict import pick_seed

    folder, seeds = pick_seed(args.run_dir, args.seed, "the page")
    out = args.out
    if seeds and out is None:  # beside seeds.json, named by the seed
        out = str(Path(args.run_dir) / f"demo-seed-{Path(folder).name.split('-')[-1]}.html")
    path = write_demo(folder, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser")
    return 0
