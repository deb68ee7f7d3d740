"""`lecun1989 predict RUN IMAGE... [--show]`: classify pictures of handwritten digits."""

from __future__ import annotations

import json
import sys

from lecun1989.cli.main import help_formatter
from lecun1989.errors import UserError

HOW = ("Each picture is prepared as NC89 §2 prepared its digits, robust to real paper: "
       "shading divided out, the ink thresholded (Otsu), specks and thin ruled lines "
       "removed, then the digit's bounding box scaled to 16x16 with its aspect ratio kept, "
       "ink +1 and paper -1. Each picture gets one line (its result, or its error); the "
       "exit status is 2 if any picture failed.")


def add_parsers(sub) -> None:
    """Register `predict`."""
    p = sub.add_parser("predict", help="classify PNG/JPEG pictures of handwritten digits",
                       description=HOW,
        formatter_class=help_formatter())
    p.add_argument("checkpoint", help="a run folder or its model.safetensors; a folder of "
                                      "several seeds: every seed's verdict and their vote")
    p.add_argument("--seed", type=int, default=None,
                   help="in a folder of several seeds, use this seed's network alone (default: "
                        "every seed; --show draws the first seed's unless this is given)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="pictures of one digit each")
    p.add_argument("--json", action="store_true", help="print one JSON object per picture")
    p.add_argument("--show", action="store_true",
                   help="also draw what the network saw and did, one PNG per picture: the "
                        "picture, its 16x16, the H1, H2 and H3 units and the outputs")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the --show pictures, created if needed (default: the "
                        "current folder)")
    p.set_defaults(func=cmd_predict)


def pick_seed(path: str, seed: int | None, what: str) -> tuple[str, list[int]]:
    """(the run folder to use, every seed it stands for): a one-model folder as it is; in a
    folder of several seeds, seed `seed`'s folder (default: the first, for `what`)."""
    from pathlib import Path

    from lecun1989.train.runs import seed_folders

    folders = seed_folders(Path(path))
    if folders is None:
        if seed is not None:
            raise UserError(f"--seed {seed}: {path} is the folder of one run; leave out --seed")
        return path, []
    if seed is None:
        seed = next(iter(folders))
        print(f"note: {path} holds seeds {', '.join(map(str, folders))}; {what} uses seed "
              f"{seed} (choose one with --seed)")
    if seed not in folders:
        raise UserError(f"--seed {seed}: {path} holds seeds {', '.join(map(str, folders))}")
    return str(folders[seed]), list(folders)


def cmd_predict(args) -> int:
    from pathlib import Path

    from lecun1989.train.runs import seed_folders

    if args.out is not None and not args.show:
        raise UserError(f"--out {args.out}: names the folder for the --show pictures; add "
                        "--show, or leave out --out")
    folders = seed_folders(Path(args.checkpoint))
    if folders is not None and args.seed is None and not args.show:
        return _predict_seeds(args, folders)
    folder, _ = pick_seed(args.checkpoint, args.seed, "--show")
    return _predict_one(args, folder)


def _predict_seeds(args, folders: dict) -> int:
    """Every seed's verdict on every picture, then each picture's vote over the seeds."""
    from collections import Counter

    from lecun1989.analysis.predict import predict_each

    votes: dict[str, Counter] = {path: Counter() for path in args.images}
    failed = False
    for seed, folder in folders.items():
        for path, r in zip(args.images, predict_each(folder, args.images), strict=True):
            if isinstance(r, UserError):
                failed = True
                if seed == next(iter(folders)):  # a bad picture: said once, not per seed
                    print(f"lecun1989: error: {' '.join(str(r).split())}", file=sys.stderr)
                continue
            votes[path][r.digit] += 1
            if args.json:
                print(json.dumps({"image": r.path, "seed": seed, "digit": r.digit,
                                  "margin": r.margin, "rejected": r.rejected}))
            else:
                verdict = {None: "?", True: "rejected", False: "accepted"}[r.rejected]
                print(f"seed {seed}: {r.path}: {r.digit}  margin {r.margin:.3f}  {verdict}")
    for path, count in votes.items():
        if count and not args.json:
            digit, n = count.most_common(1)[0]
            print(f"{path}: {digit} by {n} of {len(folders)} seeds")
    return 2 if failed else 0


def _predict_one(args, checkpoint: str) -> int:
    from lecun1989.analysis.predict import predict_each

    results = predict_each(checkpoint, args.images)
    good = [r for r in results if not isinstance(r, UserError)]
    if good and not args.json:
        print(f"reject threshold: {_number(good[0].threshold)}, {good[0].threshold_source}")
    shown = _show_all(good, args.out or ".") if args.show and good else {}
    for path, r in zip(args.images, results, strict=True):
        if isinstance(r, UserError):
            if args.json:
                print(json.dumps({"image": path, "error": " ".join(str(r).split())}))
            sys.stdout.flush()  # the lines in the pictures' order on a terminal
            print(f"lecun1989: error: {' '.join(str(r).split())}", file=sys.stderr)
            continue
        if args.json:
            record = {"image": r.path, "digit": r.digit,
                      "outputs": [round(float(o), 6) for o in r.outputs],
                      "margin": r.margin, "threshold": r.threshold,
                      "threshold_source": r.threshold_source, "rejected": r.rejected}
            if r.path in shown:
                record["shown"] = str(shown[r.path])
            print(json.dumps(record))
            continue
        verdict = {None: "reject rule unknown", True: "REJECTED (margin below the threshold)",
                   False: "accepted"}[r.rejected]
        outputs = " ".join(f"{k}:{o:+.3f}" for k, o in enumerate(r.outputs))
        extra = f"  shown in {shown[r.path]}" if r.path in shown else ""
        print(f"{r.path}: {r.digit}  margin {r.margin:.3f}  {verdict}  outputs {outputs}{extra}")
    return 2 if len(good) < len(results) else 0


def _show_all(results: list, out: str) -> dict:
    """Draw each prediction into OUT/<picture name>-seen.png; {picture path: png path}."""
    from pathlib import Path

    from lecun1989 import files
    from lecun1989.analysis.show import save_seen

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: is a file, not a folder; give a folder for the "
                        "pictures")
    files.make_folder(folder)
    shown, used = {}, set()
    for r in results:
        stem, k = Path(r.path).stem, 1
        name = f"{stem}-seen.png"
        while name in used:  # two pictures of the same name from different folders
            k += 1
            name = f"{stem}-{k}-seen.png"
        used.add(name)
        shown[r.path] = save_seen(r, folder / name)
    return shown


def _number(x) -> str:
    return "none" if x is None else f"{x:.4f}"
