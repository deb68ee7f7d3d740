"""Optional TensorBoard logs (`lecun1989 train --tensorboard`): scalars, histograms, pictures.

The run folder stays the source of truth; these logs (RUN_DIR/tensorboard) are a view of
it. Needs the optional `tensorboard` package (pip install 'lecun1989[tensorboard]').
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.errors import UserError

DIR = "tensorboard"


def _writer(run_dir: str | os.PathLike, purge_step: int | None = None):
    """A SummaryWriter for RUN_DIR/tensorboard; a one-line UserError when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package; install it with "
                        "`pip install tensorboard` or leave out --tensorboard") from None
    return SummaryWriter(log_dir=str(Path(run_dir) / DIR), purge_step=purge_step)


def check_available() -> None:
    """Raise the one-line UserError now (before training) if tensorboard is missing."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        _writer(".")


class TensorBoardLogger:
    """A `fit` callback: the loss and per-pass metrics as scalars, parameters as histograms."""

    def __init__(self, out: str | os.PathLike, cfg: RunConfig):
        check_available()
        self.out, self.cfg = Path(out), cfg
        self.writer = None
        self._last_hist = -1  # record the first chunk's weights too

    def on_resume(self, step: int, passes_done: int, history: list) -> None:
        """Drop what a killed run logged after `step`."""
        self.writer = _writer(self.out, purge_step=step + 1)
        self._last_hist = step

    def on_steps(self, step: int, pass_index: int, losses: np.ndarray, engine) -> None:
        if self.writer is None:  # a fresh run (or --overwrite): drop an earlier run's logs
            shutil.rmtree(self.out / DIR, ignore_errors=True)
            self.writer = _writer(self.out)
        self.writer.add_scalar("loss/train", float(np.mean(losses)), step)
        every = self.cfg.train.history_every
        if self._last_hist < 0 or step // every > self._last_hist // every:
            for name, value in engine.params().items():
                self.writer.add_histogram(f"params/{name}", np.asarray(value), step)
            self._last_hist = step

    def on_pass(self, pass_index: int, metrics: dict, engine) -> None:
        step = metrics["step"]
        for split in ("train", "test"):
            for key in ("mse", "error", "reject_for_1pct"):
                self.writer.add_scalar(f"{key}/{split}", metrics[split][key], step)
        self.writer.add_scalar("pass", pass_index + 1, step)
        self.writer.flush()
        if pass_index + 1 == self.cfg.train.passes:
            self.close()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None


def add_pictures(run_dir: str | os.PathLike) -> list[str]:
    """Add the run's pictures (those of `lecun1989 plot`) as images; returns their tags."""
    from PIL import Image

    from lecun1989.analysis.plots import DPI, load_run, run_figures

    view = load_run(run_dir)
    figs, _ = run_figures(view)
    step = view.metrics[-1]["step"] if view.metrics else 0
    writer, tags = _writer(run_dir), []
    try:
        for name, fig in figs.items():
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=DPI)
            rgb = np.asarray(Image.open(buffer).convert("RGB"))
            writer.add_image(f"pictures/{name}", rgb, step, dataformats="HWC")
            tags.append(f"pictures/{name}")
    finally:
        writer.close()
    return tags


__all__ = ["DIR", "TensorBoardLogger", "add_pictures", "check_available"]
