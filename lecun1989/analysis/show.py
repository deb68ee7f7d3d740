"""`predict --show`: one picture of what the network saw and did with a picture file.

    save_seen(prediction, "seven-seen.png")

The picture as read, the 16x16 the network saw, H1's 12 maps (8x8), H2's 12 maps (4x4),
H3's 30 units and the 10 outputs as bars with the reject rule marked and the verdict.
Every unit in greys, on one scale: dark is +A (ink-like), white is -A (paper-like), so the
digit shows in the maps as it does in the input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lecun1989 import files

DPI = 110
INK = "gray_r"  # +1 black (ink), -1 white (paper)


def seen_figure(pred):
    """The figure for one Prediction (with .grey and .layers, as predict_each makes them)."""
    from matplotlib.figure import Figure

    scale = pred.scale

    fig = Figure(figsize=(12, 7.0), dpi=DPI, layout="constrained")
    maps = pred.layers["h1"].shape[0]
    grid = fig.add_gridspec(4, maps, height_ratios=[3.2, 0.85, 0.85, 0.7])
    original = fig.add_subplot(grid[0, 0:3])
    original.imshow(pred.grey, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    original.set_title(f"the picture\n{Path(pred.path).name}", fontsize=11)
    seen = fig.add_subplot(grid[0, 3:6])
    side = pred.image.shape[-1]
    seen.imshow(pred.image[0], cmap=INK, vmin=-1, vmax=1, interpolation="nearest")
    seen.set_title(f"what the network sees\n{side}x{side}, ink +1, paper -1", fontsize=11)
    for ax in (original, seen):
        ax.set_xticks([])
        ax.set_yticks([])
    _outputs(fig.add_subplot(grid[0, 7:]), pred, scale)
    for row, name, label in ((1, "h1", "H1"), (2, "h2", "H2")):
        layer = pred.layers[name]
        for j in range(maps):
            ax = fig.add_subplot(grid[row, j])
            ax.imshow(layer[j], cmap=INK, vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                s = layer.shape[1]
                ax.set_ylabel(f"{label}\n{maps} maps\n{s}x{s}", fontsize=10, rotation=0,
                              ha="right", va="center")
            if row == 1:
                ax.set_title(f"map {j}", fontsize=8)
    h3 = fig.add_subplot(grid[3, :])
    units = pred.layers["h3"]
    im = h3.imshow(units[None], cmap=INK, vmin=-scale, vmax=scale, interpolation="nearest",
                   aspect="auto")
    bar = fig.colorbar(im, ax=h3, fraction=0.04, pad=0.01, ticks=[-scale, 0, scale])
    bar.ax.set_yticklabels([f"-{scale:.2f}", "0", f"+{scale:.2f}"], fontsize=8)
    h3.set_yticks([0], [f"H3\n{len(units)} units"], fontsize=10)
    h3.set_xticks(range(len(units)), [str(k) for k in range(len(units))], fontsize=7)
    h3.tick_params(length=0)
    fig.suptitle("What the network saw, and what every layer did (dark: +, white: -)",
                 fontsize=13)
    return fig


def _outputs(ax, pred, scale: float) -> None:
    """The 10 outputs as bars; the winner must clear the runner-up by the reject threshold."""
    out = np.asarray(pred.outputs, dtype=float)
    order = np.argsort(out)
    colours = ["#2b6cb0" if k == pred.digit else "#a0aec0" for k in range(len(out))]
    ax.barh(range(len(out)), out + scale, left=-scale, color=colours, height=0.7)
    ax.set_yticks(range(len(out)), [str(k) for k in range(len(out))], fontsize=11)
    ax.invert_yaxis()
    ax.set_xlim(-scale * 1.05, scale * 1.05)
    ax.axvline(0, color="0.6", lw=0.8)
    if pred.threshold is not None:
        bar = out[order[-2]] + pred.threshold
        ax.axvline(bar, color="#c53030", lw=1.6, ls="--",
                   label="the best must pass this line:\nrunner-up + threshold")
        ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    if pred.rejected is None:
        verdict = f"margin {pred.margin:.2f} (reject rule unknown)"
    else:
        verdict = (f"{'REJECTED' if pred.rejected else 'accepted'}: margin {pred.margin:.2f} "
                   f"{'<' if pred.rejected else '≥'} threshold {pred.threshold:.2f}")
    ax.set_title(f"the answer: {pred.digit}\n{verdict}", fontsize=11)
    ax.set_xlabel("output unit value", fontsize=10)
    ax.set_ylabel("digit", fontsize=10)


def save_seen(pred, path: str | os.PathLike) -> Path:
    """Write the figure as PNG, atomically."""
    return files.write_figure(seen_figure(pred), path, dpi=DPI)
