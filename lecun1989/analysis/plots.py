"""The pictures of a run, as matplotlib Figures (no pyplot: no global state, Agg by default).

    paths = plot_run("runs/demo")  # PNGs in runs/demo/plots/

Digits are drawn black on white: -1 (the background) is white, +1 black.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from lecun1989 import files, paper
from lecun1989.analysis.history import (
    param_density,
    read_jsonl,
    read_loss,
    read_param_history,
    read_pass_weights,
)
from lecun1989.config import RunConfig
from lecun1989.errors import UserError
from lecun1989.model.tables import MAPS, connection_table
from lecun1989.train import rundir
from lecun1989.train.metrics import margins, reject_curve

DPI = 110
DIGIT = {"cmap": "gray_r", "vmin": -1, "vmax": 1}  # background -1 white, ink +1 black
# Unit outputs in greys too, the same way round: -A white, +A black (a map that responds to
# ink looks like the digit; the red/blue palette hid it, issue 15).
UNITS_CMAP = "gray_r"
LAYERS = {"h1": "H1 (12 maps 8x8, 5x5 kernels)", "h2": "H2 (12 maps 4x4, 5x5 kernels)",
          "h3": "H3 (30 units)", "out": "output (10 units)"}
EXTRA_KEYS = ("engine_resolved", "engine_reason", "device_resolved", "versions", "data_manifest")


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _mosaic(tiles: np.ndarray, cols: int, gap: int = 1, top: int = 0) -> np.ndarray:
    """Tiles (n, h, w) laid out `cols` to a row, NaN between them (and `top` rows above each)."""
    n, h, w = tiles.shape
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + gap + top) + gap, cols * (w + gap) + gap), np.nan)
    for k in range(n):
        y, x = gap + top + (k // cols) * (h + gap + top), gap + (k % cols) * (w + gap)
        out[y:y + h, x:x + w] = tiles[k]
    return out


def _tile_origin(k: int, shape: tuple[int, int], cols: int, gap: int = 1, top: int = 0):
    """(x, y) of the top-left pixel of tile k in `_mosaic`'s layout."""
    h, w = shape
    return gap + (k % cols) * (w + gap) - 0.5, gap + top + (k // cols) * (h + gap + top) - 0.5


def _show(ax, image: np.ndarray, bad: str = "white", **kw):
    """imshow without ticks; NaN (the gaps of a mosaic) drawn in `bad`."""
    cmap = matplotlib.colormaps[kw.pop("cmap")].with_extremes(bad=bad)
    im = ax.imshow(image, cmap=cmap, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _digit_mosaic(ax, images: np.ndarray, captions: list[str], cols: int,
                  color: str = "black") -> None:
    """Digits black on white in one image, each with a caption above it."""
    tiles = np.asarray(images)[:, 0]
    top = max(4, tiles.shape[1] // 3)
    _show(ax, _mosaic(tiles, cols, gap=2, top=top), bad="white", **DIGIT)
    for k, text in enumerate(captions):
        x, y = _tile_origin(k, tiles.shape[1:], cols, gap=2, top=top)
        ax.text(x + tiles.shape[2] / 2, y - 0.5, text, ha="center", va="bottom", fontsize=9,
                color=color)


def _log_ticks(ax, fmt) -> None:
    """A log y axis (call after plotting) with labelled ticks a class reads: 1, 2, 5 per
    decade (0.5%, 1%, 2%...), or every digit where the data span less than a decade; no 10^k."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    subs = (1, 2, 5) if hi / lo > 10 else range(1, 10)
    first, last = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    ax.yaxis.set_major_locator(FixedLocator([m * 10.0 ** e for e in range(first, last + 1)
                                             for m in subs]))
    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _percent_log_axis(ax) -> None:
    """Error in percent on a log axis: 0.5%, 1%, 2%, 5%..."""
    _log_ticks(ax, lambda v, _: f"{v:g}%")


def _plain_log_axis(ax) -> None:
    """A log y axis labelled 0.01, 0.02, 0.05... rather than 10^-2."""
    _log_ticks(ax, lambda v, _: f"{v:g}")


# --- the pictures ------------------------------------------------------------------------

def digits_grid(images: np.ndarray, labels: np.ndarray, rows: int = 4, cols: int = 10,
                title: str = "The first training digits, as the network sees them") -> Figure:
    """A grid of digits with their labels."""
    n = min(rows * cols, len(labels))
    rows = -(-n // cols)
    fig = _figure(cols * 0.95, rows * 1.15 + 0.7)
    size = images.shape[-1]
    ax = fig.subplots()
    _digit_mosaic(ax, images[:n], [f"label {y}" for y in labels[:n]], cols)
    ax.set_title(f"{title}\n({size}x{size} pixels in [-1, 1]: -1 white, +1 black)")
    return fig


def loss_curve(loss: dict[str, np.ndarray], steps_per_pass: int | None = None,
               window: int | None = None, every: int | None = None) -> Figure:
    """The training loss with its rolling mean (the notebook's figure), log scale.

    Each point of loss.jsonl is the mean loss over `every` patterns (train.loss_every;
    default: the step between two points)."""
    fig = _figure(9, 4.2)
    ax = fig.subplots()
    steps, values = loss["step"], loss["loss"]
    if len(steps):
        every = every or (int(steps[1] - steps[0]) if len(steps) > 1 else int(steps[0]))
        per_pass = max(1, int(np.sum(loss["pass"] == loss["pass"][0])))
        window = window or max(5, per_pass // 4)  # default: a quarter of a pass
        ax.plot(steps, values, lw=0.6, alpha=0.45, color="tab:blue",
                label=f"mean over {every:,} patterns")
        if len(values) >= window:
            rolling = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], rolling, lw=2, color="tab:red",
                    label=f"rolling mean over {window * every:,} patterns")
        if np.all(values > 0):
            _plain_log_axis(ax)
        ax.legend()
    if steps_per_pass:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_pass,
                                                   lambda p: p * steps_per_pass))
        top.set_xlabel("pass")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(_thousands)
    ax.set_xlabel("step (patterns presented)")
    ax.set_ylabel("loss (squared error per pattern, log scale)")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    return fig


def pass_metrics(records: list[dict], data_name: str = "") -> Figure:
    """Train and test MSE and error after every pass, with the paper's final values."""
    fig = _figure(12, 4.5)
    axes = fig.subplots(1, 2)
    passes = [r["pass"] for r in records]
    on = f" on {data_name}" if data_name else ""
    for ax, key, scale, label in ((axes[0], "mse", 1, "MSE"), (axes[1], "error", 100,
                                                                "error")):
        for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
            values = [r[split][key] * scale for r in records]
            ax.plot(passes, values, "o-", color=color, ms=4, label=f"{split}{on}")
            ax.axhline(paper.RESULTS[split][key] * scale, color=color, ls="--", lw=1,
                       label=f"paper {split} (NC89, {paper.PASSES} passes)")
        (_percent_log_axis if key == "error" else _plain_log_axis)(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("pass")
        ax.set_ylabel(label + " (log scale)")
        ax.set_title(f"{label} after each pass")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Train and test metrics per pass; dashed: the paper's final values")
    return fig


_thousands = FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}")


def param_heatmaps(records: list[dict], bins: int = 64, pass_weights: list[dict] | None = None,
                   steps_per_pass: int | None = None) -> Figure:
    """Each tensor's value distribution over training (the notebook's `draw_history`).

    With the weights after every pass (`read_pass_weights`), the 10 output biases are drawn
    as 10 lines, one per digit: a density of 10 values is hard to read."""
    fig = Figure(figsize=(12, 11), dpi=DPI)  # laid out by hand: constrained layout is slow
    axes = fig.subplots(4, 2, gridspec_kw={"left": 0.07, "right": 0.84, "top": 0.93,
                                           "bottom": 0.05, "hspace": 0.35, "wspace": 0.2})
    mesh = None
    lines = bool(pass_weights) and bool(steps_per_pass)
    for row, layer in enumerate(LAYERS):
        for col, kind in enumerate(("w", "b")):
            ax, name = axes[row, col], f"{layer}_{kind}"
            ax.set_ylabel("value")
            ax.xaxis.set_major_locator(MaxNLocator(6))
            ax.xaxis.set_major_formatter(_thousands)
            if row == 3:
                ax.set_xlabel("step")
            if name == "out_b" and lines:
                _bias_lines(ax, pass_weights, steps_per_pass)
                continue
            steps, edges, density = param_density(records, name, bins)
            x = np.concatenate([[steps[0]], (steps[1:] + steps[:-1]) / 2, [steps[-1]]]) \
                if len(steps) > 1 else np.array([steps[0] - 0.5, steps[0] + 0.5])
            mesh = ax.pcolormesh(x, edges, np.where(density > 0, density, np.nan),
                                 norm=LogNorm(1e-4, 1), cmap="magma", shading="flat")
            ax.set_facecolor("black")
            ax.set_title(f"{LAYERS[layer]}: {'weights' if kind == 'w' else 'biases'} "
                         f"({name})", fontsize=10)
    fig.colorbar(mesh, cax=fig.add_axes((0.88, 0.25, 0.015, 0.5)),
                 label="fraction of the tensor's values per bin (log)")
    fig.suptitle("Parameter values over training: x = step, y = value, colour = density")
    return fig


def _bias_lines(ax, pass_weights: list[dict], steps_per_pass: int) -> None:
    """The 10 output biases after every pass, one line per digit, labelled at its end."""
    biases = np.array([np.asarray(w["out_b"], dtype=float) for w in pass_weights])
    steps = np.arange(len(biases)) * steps_per_pass
    colors = matplotlib.colormaps["tab10"].colors
    for d in range(biases.shape[1]):
        ax.plot(steps, biases[:, d], color=colors[d], lw=1.5, label=f"digit {d}")
        ax.annotate(str(d), (steps[-1], biases[-1, d]), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8, color=colors[d])
    ax.set_title("output (10 units): biases (out_b), one line per digit, after each pass",
                 fontsize=10)
    ax.grid(alpha=0.3)


def feature_maps(layers: dict, image: np.ndarray, label: int, prediction: int,
                 scale: float = 1.7159, cmap: str = UNITS_CMAP, title: str = "",
                 target: float | None = None) -> Figure:
    """A digit and what every layer makes of it (`Net1989.layers`): the 12 H1 maps, the 12
    H2 maps (drawn at H1's size), H3's 30 units and the 10 outputs as bars."""
    fig = _figure(13, 5.6)
    ax_in, ax_maps, ax_h3, ax_out = fig.subplots(1, 4, width_ratios=[1.4, 5, 0.9, 1.8])
    _show(ax_in, np.asarray(image)[0], **DIGIT)
    ax_in.set_title(f"input (16x16)\nlabel {label}, predicted {prediction}", fontsize=10)
    h1, h2 = np.asarray(layers["h1"])[0], np.asarray(layers["h2"])[0]
    zoom = h1.shape[1] // h2.shape[1]  # draw H2's 4x4 maps at H1's size, pixel for pixel
    tiles = np.concatenate([h1, np.kron(h2, np.ones((zoom, zoom)))])
    half = MAPS // 2  # six maps a row: the maps twice as large as in one row of 12
    im = _show(ax_maps, _mosaic(tiles, half), cmap=cmap, vmin=-scale, vmax=scale)
    size = h1.shape[1]
    ax_maps.set_yticks([1 + r * (size + 1) + size / 2 - 0.5 for r in range(4)],
                       [f"H1 maps {a}-{a + half - 1}\n({size}x{size})" if r < 2 else
                        f"H2 maps {a}-{a + half - 1}\n({h2.shape[1]}x{h2.shape[2]})"
                        for r, a in enumerate((0, half, 0, half))])
    ax_maps.tick_params(length=0)
    ax_maps.set_title("feature maps (black: +, white: -)", fontsize=10)
    h3 = np.asarray(layers["h3"])[0]
    _show(ax_h3, h3.reshape(-1, 3), cmap=cmap, vmin=-scale, vmax=scale)
    ax_h3.set_title(f"H3\n({h3.size} units)", fontsize=10)
    out = np.asarray(layers["out"])[0]
    ax_out.barh(range(len(out)), out, color=["black" if d == prediction else "0.65"
                                             for d in range(len(out))])
    ax_out.set_yticks(range(len(out)))
    ax_out.invert_yaxis()
    ax_out.set_xlim(-scale * 1.05, scale * 1.05)
    ax_out.axvline(0, color="0.3", lw=0.8)
    ax_out.set_ylabel("digit")
    ax_out.set_xlabel("output")
    if target:  # what training pulls the outputs towards: +t for the label, -t for the rest
        for x in (-target, target):
            ax_out.axvline(x, color="tab:blue", ls=":", lw=1.2)
        ax_out.set_xlabel(f"output (dotted: targets -{target:g}, +{target:g})")
    ax_out.set_title(f"outputs\n(largest: {prediction})", fontsize=10)
    fig.colorbar(im, ax=[ax_maps, ax_h3], location="bottom", shrink=0.5, aspect=40,
                 label=f"unit output (scaled tanh, -{scale:g} to +{scale:g})")
    fig.suptitle(title or "What the network makes of one test digit, layer by layer")
    return fig


def kernels(params: dict[str, np.ndarray], table) -> Figure:
    """The learned 5x5 kernels: H1's 12, and H2's, one row per H2 map, one column per H1 map."""
    fig = _figure(11.5, 6.2)
    left, right = fig.subplots(1, 2, width_ratios=[1, 2.2])
    h1 = np.asarray(params["h1_w"])[:, 0]
    lim = float(np.abs(h1).max()) or 1.0
    im = _show(left, _mosaic(h1, 3), cmap="RdBu_r", vmin=-lim, vmax=lim)
    left.set_yticks([1 + r * 6 + 2 for r in range(4)], [f"maps {3 * r}-{3 * r + 2}"
                                                        for r in range(4)])
    left.set_title("H1: the 12 kernels (input -> H1 map)", fontsize=10)
    fig.colorbar(im, ax=left, location="bottom", shrink=0.8, label="H1 weight")
    h2, rows = np.asarray(params["h2_w"]), connection_table(table)
    grid = np.full((MAPS * MAPS, 5, 5), np.nan)  # row j, column i: H2 map j's kernel on H1 i
    for j in range(MAPS):
        for k, i in enumerate(rows[j]):
            grid[j * MAPS + i] = h2[j, k]
    lim = float(np.abs(h2).max()) or 1.0
    im = _show(right, _mosaic(grid, MAPS), bad="0.8", cmap="RdBu_r", vmin=-lim, vmax=lim)
    centres = [1 + k * 6 + 2 for k in range(MAPS)]
    right.set_xticks(centres, range(MAPS))
    right.set_yticks(centres, range(MAPS))
    right.set_xlabel("H1 map (input)")
    right.set_ylabel("H2 map")
    right.set_title("H2: one 5x5 kernel per connection (grey: not connected)", fontsize=10)
    fig.colorbar(im, ax=right, shrink=0.8, label="H2 weight")
    fig.suptitle("Learned kernels (red: positive, blue: negative weights)")
    return fig


def misclassified(images: np.ndarray, labels: np.ndarray, outputs: np.ndarray,
                  limit: int = 60, cols: int = 10) -> Figure:
    """The misclassified test digits, most confident mistakes first."""
    predicted = outputs.argmax(1)
    wrong = np.nonzero(predicted != labels)[0]
    wrong = wrong[np.argsort(-margins(outputs)[wrong], kind="stable")][:limit]
    rows = max(1, -(-len(wrong) // cols))
    fig = _figure(cols * 0.95, rows * 1.15 + 0.7)
    total = int((predicted != labels).sum())
    shown = f"the {len(wrong)} most confident shown" if total > len(wrong) else "all shown"
    ax = fig.subplots()
    if len(wrong):
        _digit_mosaic(ax, images[wrong], [f"{labels[i]} -> {predicted[i]}" for i in wrong],
                      cols, color="tab:red")
    else:
        ax.axis("off")
    ax.set_title(f"Misclassified test digits: {total} of {len(labels)}\n({shown}; "
                 "most confident first; caption: true -> predicted)")
    return fig


def confusion(labels: np.ndarray, predicted: np.ndarray) -> Figure:
    """The 10x10 confusion matrix (counts; colour: fraction of the true class)."""
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig = _figure(6.4, 5.6)
    ax = fig.subplots()
    im = ax.imshow(fractions, cmap="Blues", norm=LogNorm(1e-3, 1))
    for t in range(10):
        for p in range(10):
            if counts[t, p]:
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                        color="white" if fractions[t, p] > 0.5 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"Confusion matrix on the test set ({len(labels)} digits)")
    fig.colorbar(im, ax=ax, label="fraction of the true class (log)")
    return fig


def reject_plot(outputs: np.ndarray, labels: np.ndarray) -> Figure:
    """Error on the accepted digits against the fraction rejected, with the paper's point."""
    rejected, error = reject_curve(outputs, labels)
    fig = _figure(7.5, 4.8)
    ax = fig.subplots()
    ax.plot(rejected * 100, error * 100, color="tab:blue", label="this run (test set)")
    ok = np.nonzero(error <= 0.01 + 1e-12)[0]
    ref = paper.RESULTS["test"]["reject_for_1pct"] * 100
    if len(ok):
        x = rejected[ok[0]] * 100
        ax.plot([x], [error[ok[0]] * 100], "o", color="tab:blue", ms=8,
                label=f"this run: {x:.1f}% rejected for <= 1% error")
    ax.plot([ref], [1.0], "*", color="tab:red", ms=14,
            label=f"paper (NC89): {ref:.1f}% rejected for 1% error")
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.set_xlim(0, min(100, max(40, (rejected[ok[0]] * 100 if len(ok) else 100) * 1.3)))
    ax.set_ylim(0, max(error[0] * 100 * 1.1, 1.5))
    ax.set_xlabel("test digits rejected (%), least confident first")
    ax.set_ylabel("error on the accepted digits (%)")
    ax.set_title("Error versus reject (margin: difference of the two largest outputs)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def spread_plot(runs: dict[str, list[dict]]) -> Figure:
    """Test and train error per pass of several runs (e.g. seeds), with their mean."""
    fig = _figure(9, 4.8)
    ax = fig.subplots()
    for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
        curves = [[r[split]["error"] * 100 for r in records] for records in runs.values()]
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, color=color, lw=0.8, alpha=0.4)
        n = min(len(c) for c in curves)
        ax.plot(range(1, n + 1), np.mean([c[:n] for c in curves], axis=0), color=color, lw=2.5,
                label=f"{split}: mean of {len(curves)} runs (thin: each run)")
        ax.axhline(paper.RESULTS[split]["error"] * 100, color=color, ls="--", lw=1,
                   label=f"paper {split} (NC89)")
    _percent_log_axis(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("pass")
    ax.set_ylabel("error (log scale)")
    ax.set_title(f"Error per pass over {len(runs)} runs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


# --- a run, loaded back ------------------------------------------------------------------

@dataclass
class RunView:
    """What a run folder holds, read back; `data` and `params` are None when unavailable."""

    dir: Path
    config: dict
    cfg: RunConfig
    summary: dict
    metrics: list
    params: dict | None = None
    data: object = None  # lecun1989.train.loop.RunData
    outputs: np.ndarray | None = None  # the network's outputs on the test digits
    missing: dict = field(default_factory=dict)  # what could not be loaded, and why
    warnings: list = field(default_factory=list)  # e.g. data that differ from the run's

    @property
    def steps_per_pass(self) -> int | None:
        return self.summary.get("data", {}).get("train") or (
            self.metrics[0]["step"] if self.metrics else None)


def run_config(config: dict) -> RunConfig:
    """The RunConfig of a run's config.json (which adds a few keys of its own)."""
    try:
        return RunConfig.from_dict({k: v for k, v in config.items() if k not in EXTRA_KEYS})
    except UserError as e:
        raise UserError(f"config.json: {e} (written by another lecun1989 version?)") from None


def _read_json(path: Path):
    """A JSON file's content, or a one-line UserError when it is damaged."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); the run folder is damaged") from None


def load_run(run_dir: str | os.PathLike, with_data: bool = True) -> RunView:
    """Read a run folder: config, summary, metrics; the weights, data and test outputs."""
    run_dir = Path(run_dir)
    path = run_dir / rundir.CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir}: no {rundir.CONFIG} there; pass a run folder written by "
                        "`lecun1989 train`")
    config = _read_json(path)
    summary_path = run_dir / rundir.SUMMARY
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    if not isinstance(config, dict) or not isinstance(summary, dict):
        raise UserError(f"{run_dir}: config.json or summary.json is not a JSON object; "
                        "the run folder is damaged")
    view = RunView(run_dir, config, run_config(config), summary,
                   read_jsonl(run_dir / rundir.METRICS))
    if not summary:
        view.missing["summary"] = "no summary.json (the run did not finish)"
    meta = {}
    try:
        from lecun1989.train import checkpoint

        _, view.params, _, meta = checkpoint.load(run_dir / rundir.CHECKPOINT)
    except UserError as e:
        view.missing["weights"] = str(e)
    if with_data:
        try:
            from lecun1989.train.loop import data_sha256, load_run_data

            view.data = load_run_data(view.cfg)
            if meta.get("data_sha256") not in (None, data_sha256(view.data)):
                view.warnings.append("the data loaded now differ from those the run was "
                                     "trained on (other files or library versions?): the "
                                     "pictures of digits and predictions may not match the run")
        except UserError as e:
            view.missing["data"] = str(e)
    if view.params is not None and view.data is not None:
        from lecun1989.model.net import predict

        view.outputs = predict(view.cfg.model, view.params, view.data.test_images)
    return view


def forward_layers(model_cfg, params: dict, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output for images (N, 1, S, S) under `params` (model.net.layers)."""
    from lecun1989.model.net import layers

    return layers(model_cfg, params, images)


def network_layers(view: RunView, index: int) -> dict[str, np.ndarray]:
    """Every layer's output for test digit `index` under the run's final weights."""
    return forward_layers(view.cfg.model, view.params, view.data.test_images[index:index + 1])


def choose_digit(labels: np.ndarray, digit: int | None = None, index: int | None = None) -> int:
    """The test digit to draw: the first of class `digit`, or the one at `index` (default 0)."""
    if digit is not None and index is not None:
        raise UserError("--digit and --index both given: pick a digit by class (--digit 3) "
                        "or by its place in the test set (--index 17), not both")
    if digit is not None:
        if not 0 <= digit <= 9:
            raise UserError(f"--digit {digit}: a digit class is 0..9 (for a test digit by its "
                            "place, use --index)")
        found = np.nonzero(np.asarray(labels) == digit)[0]
        if not len(found):
            raise UserError(f"--digit {digit}: the test set holds no {digit}; pick another class")
        return int(found[0])
    index = 0 if index is None else index
    if not 0 <= index < len(labels):
        raise UserError(f"--index {index}: choose a test digit 0..{len(labels) - 1}")
    return index


PICTURES = ("digits", "loss", "metrics", "params", "feature_maps", "learning", "kernels",
            "misclassified", "confusion", "reject")
ANIMATIONS = ("kernels_by_pass",)  # GIFs, beside the PNGs


def _pass_weights(view: RunView) -> tuple[list[dict], str]:
    """(the weights after every pass, why there are none)."""
    try:
        weights = read_pass_weights(view.dir)
    except UserError as e:
        return [], str(e)
    return weights, "" if weights else ("no pass_weights.safetensors (a run written before "
                                        "the weights of every pass were kept; train it again)")


def run_figures(view: RunView, digit: int | None = None,
                index: int | None = None) -> tuple[dict[str, Figure], dict[str, str]]:
    """({picture: Figure}, {picture: why it was skipped}) for a loaded run; the feature maps
    are of the first test digit of class `digit`, or of test digit `index` (default 0)."""
    figs, skipped = {}, {}
    data, params, outputs = view.data, view.params, view.outputs
    no_data = view.missing.get("data", "")
    no_weights = view.missing.get("weights", "")
    weights, no_passes = _pass_weights(view)
    if data is not None:
        figs["digits"] = digits_grid(data.train_images, data.train_labels)
    else:
        skipped["digits"] = no_data
    loss = read_loss(view.dir)
    if len(loss["step"]):
        figs["loss"] = loss_curve(loss, view.steps_per_pass, every=view.cfg.train.loss_every)
    else:
        skipped["loss"] = "no loss.jsonl (trained without the history recorder?)"
    if view.metrics:
        figs["metrics"] = pass_metrics(view.metrics, view.cfg.data.name)
    else:
        skipped["metrics"] = "no metrics.jsonl (no pass finished)"
    records = read_param_history(view.dir)
    if records:
        figs["params"] = param_heatmaps(records, pass_weights=weights,
                                        steps_per_pass=view.steps_per_pass)
    else:
        skipped["params"] = "no params.jsonl (trained without the history recorder?)"
    if params is not None:
        figs["kernels"] = kernels(params, view.cfg.model.table)
    else:
        skipped["kernels"] = no_weights
    if outputs is None:
        for name in ("feature_maps", "learning", "misclassified", "confusion", "reject"):
            skipped[name] = no_weights or no_data
        return figs, skipped
    labels, scale = data.test_labels, view.cfg.model.tanh_scale
    i = choose_digit(labels, digit, index)
    figs["feature_maps"] = feature_maps(
        network_layers(view, i), data.test_images[i], int(labels[i]),
        int(outputs[i].argmax()), scale,
        title=f"What the network makes of test digit #{i} (label {labels[i]}), layer by layer",
        target=view.cfg.train.target)
    if weights:
        from lecun1989.analysis import timeline  # it draws with this module's helpers

        passes = timeline.learning_passes(len(weights) - 1)
        figs["learning"] = timeline.learning(
            timeline.learning_data(weights, view.cfg.model, data.test_images[i], passes),
            int(labels[i]), i, scale)
    else:
        skipped["learning"] = no_passes
    figs["misclassified"] = misclassified(data.test_images, labels, outputs)
    figs["confusion"] = confusion(labels, outputs.argmax(1))
    figs["reject"] = reject_plot(outputs, labels)
    return figs, skipped


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a figure as PNG (atomically), cropped to what is drawn plus a margin: constrained
    layout cannot always make room for a colour bar's label beside fixed-aspect images."""
    return files.write_figure(fig, path, dpi=DPI, bbox_inches="tight", pad_inches=0.12)


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             digit: int | None = None, view: RunView | None = None,
             index: int | None = None) -> tuple[dict[str, Path], dict]:
    """Write every picture of a run as PNG, and the kernels pass by pass as an animated GIF
    (default: RUN_DIR/plots); returns (paths, skipped)."""
    view = view or load_run(run_dir)
    out = Path(out_dir) if out_dir else view.dir / "plots"
    files.make_folder(out)
    figs, skipped = run_figures(view, digit, index)
    paths = {name: save(fig, out / f"{name}.png") for name, fig in figs.items()}
    weights, no_passes = _pass_weights(view)
    if weights:
        from lecun1989.analysis import timeline

        gif = timeline.save_gif(timeline.kernel_frames(weights), out / "kernels_by_pass.gif")
        names = list(paths)  # the GIF goes beside `learning` (in the report too)
        at = names.index("learning") + 1 if "learning" in names else len(names)
        paths = {n: paths.get(n, gif) for n in [*names[:at], "kernels_by_pass", *names[at:]]}
    else:
        skipped["kernels_by_pass"] = no_passes
    return paths, skipped


__all__ = ["ANIMATIONS", "PICTURES", "RunView", "choose_digit", "confusion", "digits_grid",
           "feature_maps", "forward_layers", "kernels", "load_run", "loss_curve",
           "misclassified", "param_heatmaps", "pass_metrics", "plot_run", "reject_plot",
           "run_config", "run_figures", "save", "spread_plot"]
