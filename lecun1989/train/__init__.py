"""Training: the shared driver, metrics, update rules, checkpoints and run folders."""

from lecun1989.train.loop import Run, RunData, evaluate, fit, load_run_data
from lecun1989.train.metrics import evaluate_outputs, reject_curve, reject_for_error

__all__ = ["Run", "RunData", "evaluate", "evaluate_outputs", "fit", "load_run_data",
           "reject_curve", "reject_for_error"]
