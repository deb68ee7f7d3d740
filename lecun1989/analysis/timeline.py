"""Learning over time, and several runs in one figure: pictures from the weights after every
pass (pass_weights.safetensors) and from several run folders (e.g. seed-<k>/).

    learning(learning_data(read_pass_weights(run), cfg.model, image, learning_passes(23)), ...)
    save_gif(kernel_frames(read_pass_weights(run)), "kernels_by_pass.gif")
    overlay_run_dirs(["runs/x/seed-0", "runs/x/seed-1"])

`lecun1989 plot` draws `learning` and the GIF through `plots.plot_run`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from lecun1989 import files
from lecun1989.analysis.history import read_jsonl, read_loss
from lecun1989.analysis.plots import (
    UNITS_CMAP,
    _figure,
    _mosaic,
    _percent_log_axis,
    _plain_log_axis,
    _show,
    _thousands,
    forward_layers,
)
from lecun1989.errors import UserError
from lecun1989.model.tables import MAPS
from lecun1989.train import rundir

LEARNING_PASSES = (1, 2, 5, 10, 23)  # the passes `learning` draws (those the run has)


def learning_passes(passes_done: int, wanted=LEARNING_PASSES) -> list[int]:
    """The passes `learning` draws: 0 (the initial weights), those of `wanted` the run has,
    and its last pass."""
    chosen = [0, *(p for p in wanted if p <= passes_done)]
    return chosen + [passes_done] if passes_done not in chosen else chosen


def learning_data(pass_weights: list[dict], model_cfg, image: np.ndarray,
                  passes: list[int]) -> dict[str, np.ndarray]:
    """H1's kernels (n, 12, 5, 5) and one digit's H1 maps (n, 12, 8, 8) after each of
    `passes` (0: the initial weights): what `learning` draws."""
    kernels_, maps = [], []
    for p in passes:
        kernels_.append(np.asarray(pass_weights[p]["h1_w"], dtype=float)[:, 0])
        maps.append(forward_layers(model_cfg, pass_weights[p], image[None])["h1"][0])
    return {"passes": np.array(passes), "kernels": np.array(kernels_), "maps": np.array(maps)}


def _pass_name(p: int) -> str:
    return "initial" if p == 0 else f"after pass {p}"


def learning(data: dict[str, np.ndarray], label: int, index: int,
             scale: float = 1.7159) -> Figure:
    """Small multiples: H1's 12 kernels and one digit's 12 H1 maps, one row per pass."""
    passes, k, maps = data["passes"], data["kernels"], data["maps"]
    n = len(passes)
    fig = _figure(15, 1.3 + 0.62 * n)
    left, right = fig.subplots(1, 2, width_ratios=[6 * MAPS + 1, 9 * MAPS + 1])
    lim = float(np.abs(k).max()) or 1.0  # one colour scale for every pass: growth shows
    im = _show(left, _mosaic(k.reshape(-1, *k.shape[2:]), MAPS), cmap="RdBu_r", vmin=-lim,
               vmax=lim)
    left.set_yticks([1 + r * 6 + 2 for r in range(n)], [_pass_name(p) for p in passes])
    left.set_title("H1's 12 kernels (5x5; red: +, blue: -)", fontsize=10)
    fig.colorbar(im, ax=left, location="bottom", shrink=0.6, aspect=30, label="H1 weight")
    im = _show(right, _mosaic(maps.reshape(-1, *maps.shape[2:]), MAPS), cmap=UNITS_CMAP,
               vmin=-scale, vmax=scale)
    right.set_yticks([1 + r * 9 + 4 for r in range(n)], [_pass_name(p) for p in passes])
    right.set_title(f"the 12 H1 maps of test digit #{index} (label {label}; black: +, white: -)",
                    fontsize=10)
    fig.colorbar(im, ax=right, location="bottom", shrink=0.6, aspect=30, label="H1 output")
    for ax in (left, right):
        ax.tick_params(length=0)
    fig.suptitle("Learning over time: the same kernels and maps after more and more passes")
    return fig


GIF_CELL, GIF_GAP, GIF_CAPTION = 20, 10, 34  # pixels: per kernel weight, between kernels, text


def kernel_frames(pass_weights: list[dict]) -> list[np.ndarray]:
    """One RGB frame (uint8) per entry of `pass_weights`: H1's 12 kernels, 4 to a row, each
    weight a GIF_CELL-pixel square coloured on one scale for all passes (RdBu_r)."""
    h1 = np.array([np.asarray(w["h1_w"], dtype=float)[:, 0] for w in pass_weights])
    lim = float(np.abs(h1).max()) or 1.0
    cmap = matplotlib.colormaps["RdBu_r"]
    cols, (n_k, kh, kw) = 4, h1.shape[1:]
    rows = -(-n_k // cols)
    width = cols * kw * GIF_CELL + (cols + 1) * GIF_GAP
    height = GIF_CAPTION + rows * kh * GIF_CELL + rows * GIF_GAP
    font = ImageFont.load_default(size=16)
    frames = []
    for p, kernels_ in enumerate(h1):
        frame = np.full((height, width, 3), 255, dtype=np.uint8)
        rgb = np.round(cmap((kernels_ + lim) / (2 * lim))[..., :3] * 255).astype(np.uint8)
        for k in range(n_k):
            y, x = kernel_origin(k, kh, kw)
            frame[y:y + kh * GIF_CELL, x:x + kw * GIF_CELL] = np.kron(
                rgb[k], np.ones((GIF_CELL, GIF_CELL, 1), dtype=np.uint8))
        image = Image.fromarray(frame)
        when = "initial weights" if p == 0 else f"after pass {p} of {len(h1) - 1}"
        ImageDraw.Draw(image).text((GIF_GAP, 8), f"H1 kernels, {when} (red +, blue -)",
                                   fill=(0, 0, 0), font=font)
        frames.append(np.asarray(image))
    return frames


def kernel_origin(k: int, kh: int = 5, kw: int = 5) -> tuple[int, int]:
    """(y, x) of kernel k's top-left pixel in a `kernel_frames` frame."""
    row, col = divmod(k, 4)
    return (GIF_CAPTION + row * (kh * GIF_CELL + GIF_GAP),
            GIF_GAP + col * (kw * GIF_CELL + GIF_GAP))


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, ms: int = 400) -> Path:
    """An animated GIF that loops, the last frame held 2 s (atomically)."""
    images = [Image.fromarray(f) for f in frames]
    return files.write_figure(images[0], path, format="GIF", save_all=True,
                              append_images=images[1:], loop=0, optimize=False,
                              duration=[ms] * (len(images) - 1) + [2000], disposal=1)


LEGEND_RUNS = 6  # runs named in the overlay's legend; beyond, the title counts them


def runs_overlay(runs: dict[str, tuple[dict, list[dict]]]) -> Figure:
    """Several runs' curves in one figure (e.g. the seed-<k>/ folders of a multi-seed run):
    {name: (read_loss(dir), metrics records)} -> rolling-mean loss, train and test error per pass.
    """
    fig = _figure(13, 4.6)
    ax_loss, ax_err = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"].colors
    named = len(runs) <= LEGEND_RUNS  # more runs: one legend entry would hide the curves
    for k, (name, (loss, records)) in enumerate(runs.items()):
        color = colors[k % 10]
        if not named:
            name = "_"  # matplotlib leaves labels starting with "_" out of the legend
        if len(loss["step"]):
            per_pass = max(1, int(np.sum(loss["pass"] == loss["pass"][0])))
            window = min(len(loss["loss"]), max(5, per_pass // 4))
            rolling = np.convolve(loss["loss"], np.ones(window) / window, mode="valid")
            ax_loss.plot(loss["step"][window - 1:], rolling, color=color, lw=1.2, label=name)
        passes = [r["pass"] for r in records]
        ax_err.plot(passes, [r["test"]["error"] * 100 for r in records], "o-", ms=3,
                    color=color, label=f"{name} test")
        ax_err.plot(passes, [r["train"]["error"] * 100 for r in records], ":", color=color,
                    label=f"{name} train")
    _plain_log_axis(ax_loss)
    ax_loss.xaxis.set_major_formatter(_thousands)
    ax_loss.set_xlabel("step (patterns presented)")
    ax_loss.set_ylabel("loss, rolling mean over a quarter pass")
    ax_loss.set_title("Training loss of each run")
    _percent_log_axis(ax_err)
    ax_err.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_err.set_xlabel("pass")
    ax_err.set_ylabel("error (log scale)")
    ax_err.set_title("Error after each pass (solid: test, dotted: train)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3, which="both")
        if named:
            ax.legend(fontsize=7, ncol=2)
    if not named:
        ax_loss.set_title(f"Training loss of each of {len(runs)} runs (one colour each)")
    return fig


def overlay_run_dirs(run_dirs) -> Figure:
    """`runs_overlay` of run folders (e.g. a multi-seed folder's seed-<k>/), named by folder."""
    runs = {}
    for d in map(Path, run_dirs):
        if not (d / rundir.METRICS).is_file():
            raise UserError(f"{d}: no {rundir.METRICS}; pass run folders in which a pass finished")
        runs[d.name] = (read_loss(d), read_jsonl(d / rundir.METRICS))
    return runs_overlay(runs)


__all__ = ["LEARNING_PASSES", "kernel_frames", "kernel_origin", "learning", "learning_data",
           "learning_passes", "overlay_run_dirs", "runs_overlay", "save_gif"]
