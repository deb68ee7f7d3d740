"""`lecun1989 demo RUN`: one self-contained HTML page to draw a digit and watch every layer.

    write_demo("runs/paper", "runs/paper/demo.html")

The page (the template demo.html beside this file) holds the run's weights after every pass
(pass_weights.safetensors; 24 x 9,760 numbers for a 23-pass run), the reject threshold and
test error of each pass, and the test digits the trained run got wrong. Its JavaScript runs
the forward pass (Net1989.layers, in float64) and prepares the drawing exactly as
analysis/picture.py prepares a picture file: the same steps, thresholds and integer
arithmetic, so the 16x16 differs only by the order of the additions of the final pixel-area
averaging and by predict's float32 output (below 1e-6; tests/test_demo.py checks both the
16x16 and the layers against Python). The page makes no network request and works from
file://. Tests and scripts reach it through `window.lecun1989` (forward, prepare, state).
"""

from __future__ import annotations

import base64
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from lecun1989 import files
from lecun1989.analysis import picture
from lecun1989.errors import UserError
from lecun1989.model.params import PARAM_NAMES, layer_shapes
from lecun1989.model.tables import connection_table

TEMPLATE = "demo.html"
SLOT = "/*LECUN1989_DATA*/null"  # where the template takes the run's data


def _b64(a: np.ndarray, dtype: str) -> str:
    """Little-endian raw values, base64 (the page reads them into a typed array)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
                            .tobytes()).decode("ascii")


def demo_data(run_dir: str | os.PathLike) -> dict:
    """Everything the page needs, as JSON-able values (tests read it too)."""
    from lecun1989.analysis.history import read_pass_weights
    from lecun1989.analysis.predict import network_layers
    from lecun1989.train import checkpoint
    from lecun1989.train.loop import load_run_data
    from lecun1989.train.metrics import reject_threshold

    run_dir = Path(run_dir)
    cfg, final, _, _ = checkpoint.load(run_dir)
    passes = read_pass_weights(run_dir)
    labels = [f"after pass {p}" if p else "before training" for p in range(len(passes))]
    if not passes:  # a run written before pass_weights.safetensors existed
        passes, labels = [final], ["the final weights (this run kept no per-pass weights)"]
    try:
        data = load_run_data(cfg)
    except UserError as e:
        raise UserError(f"{run_dir}: the run's test set is unavailable ({e}); the demo shows "
                        "the test digits the run got wrong, so make the data reachable") from None
    images, truth = data.test_images, data.test_labels
    measured = _measured_passes(run_dir) if len(passes) > 1 else {}
    thresholds, errors = [], []
    for p, params in enumerate(passes):
        if p not in measured:  # the initial weights, or a pass summary.json lacks
            out = network_layers(cfg, params, images)["out"]
            measured[p] = reject_threshold(out, truth, 0.01), float((out.argmax(1) != truth).mean())
        thresholds.append(measured[p][0])
        errors.append(measured[p][1])
    final_out = network_layers(cfg, final, images)["out"]
    wrong = np.nonzero(final_out.argmax(1) != truth)[0]
    m, dtype = cfg.model, "float64" if cfg.model.dtype == "float64" else "float32"
    flat = np.concatenate([np.asarray(p[n], dtype=np.float64).ravel()
                           for p in passes for n in PARAM_NAMES])
    return {
        "run": {"name": run_dir.resolve().name, "preset": cfg.preset, "data": data.name,
                "test_digits": int(len(truth))},
        "model": {"size": m.input_size, "box": picture.BOX.get(m.input_size, m.input_size),
                  "pad_value": m.pad_value, "activation": m.activation,
                  "scale": m.tanh_scale, "slope": m.tanh_slope,
                  "output_activation": bool(m.output_activation),
                  "table": connection_table(m.table).tolist(),
                  "shapes": {n: list(s) for n, s in layer_shapes(m).items()},
                  "names": list(PARAM_NAMES)},
        "dtype": dtype, "weights": _b64(flat, dtype), "pass_labels": labels,
        "thresholds": thresholds, "test_error": errors,
        "wrong": {"index": wrong.tolist(), "label": truth[wrong].tolist(),
                  "answer": final_out[wrong].argmax(1).tolist(),
                  "images": _b64(images[wrong].reshape(len(wrong), -1), "float32")},
        "prepare": {"bins": picture.BINS, "min_strong_bin": picture.MIN_STRONG_BIN,
                    "line_span": list(picture.LINE_SPAN), "line_thick": picture.LINE_THICK,
                    "speck": picture.SPECK, "closing": picture.CLOSING},
    }


def _measured_passes(run_dir: Path) -> dict[int, tuple[float, float]]:
    """{pass: (reject threshold, test error)} as training measured them (summary.json)."""
    try:
        records = json.loads((run_dir / "summary.json").read_text())["passes"]
        return {int(r["pass"]): (float(r["test"]["reject_threshold_1pct"]),
                                 float(r["test"]["error"])) for r in records}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def render(data: dict) -> str:
    """The page's HTML with the data in it."""
    template = resources.files("lecun1989.analysis").joinpath(TEMPLATE).read_text("utf-8")
    if template.count(SLOT) != 1:
        raise RuntimeError(f"{TEMPLATE}: expected one {SLOT}")
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return template.replace(SLOT, payload)


def write_demo(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the page (default RUN_DIR/demo.html), atomically; returns its path."""
    run_dir = Path(run_dir)
    path = Path(out) if out else run_dir / "demo.html"
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder; give a file name such as {path}/demo.html")
    files.write_text(path, render(demo_data(run_dir)))
    return path
