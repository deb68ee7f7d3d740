"""`lecun1989 predict CHECKPOINT IMAGE...`: classify pictures of handwritten digits."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    """Register `predict`."""
    p = sub.add_parser("predict", help="classify PNG/JPEG pictures of handwritten digits")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="pictures of one digit each")
    p.add_argument("--json", action="store_true", help="print one JSON object per picture")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from lecun1989.analysis.predict import predict_files  # noqa: PLC0415

    results = predict_files(args.checkpoint, args.images)
    if not args.json:
        print(f"reject threshold: {_number(results[0].threshold)}, "
              f"{results[0].threshold_source}")
    for r in results:
        if args.json:
            print(json.dumps({"image": r.path, "digit": r.digit,
                              "outputs": [round(float(o), 6) for o in r.outputs],
                              "margin": r.margin, "threshold": r.threshold,
                              "threshold_source": r.threshold_source, "rejected": r.rejected}))
            continue
        verdict = {None: "reject rule unknown", True: "REJECTED (margin below the threshold)",
                   False: "accepted"}[r.rejected]
        outputs = " ".join(f"{k}:{o:+.3f}" for k, o in enumerate(r.outputs))
        print(f"{r.path}: {r.digit}  margin {r.margin:.3f}  {verdict}\n  outputs {outputs}")
    return 0


def _number(x) -> str:
    return "none" if x is None else f"{x:.4f}"
