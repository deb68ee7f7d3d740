"""Watching a run: histories recorded while training, pictures, reports, predictions.

    fit(cfg, data, out, callbacks=[HistoryRecorder(out, cfg)])
    plot_run(out); write_report([out]); predict_files(out, ["digit.png"])

The plotting, report and prediction modules load matplotlib or PIL, so they are imported
only when first used.
"""

from importlib import import_module

from lecun1989.analysis.history import (
    HistoryRecorder,
    param_density,
    read_loss,
    read_param_history,
    read_snapshots,
)

_LAZY = {"plot_run": "plots", "load_run": "plots", "write_report": "report",
         "predict_files": "predict", "prepare": "picture", "read_grey": "picture"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"lecun1989.analysis.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lecun1989.analysis' has no attribute {name!r}")


__all__ = ["HistoryRecorder", "load_run", "param_density", "plot_run", "predict_files",
           "prepare", "read_grey", "read_loss", "read_param_history", "read_snapshots",
           "write_report"]
