"""Training: the shared loop, metrics, checkpoints and run folders."""

from lecun1989.train.loop import Run, RunData, evaluate, fit, load_run_data, parse_seeds
from lecun1989.train.metrics import evaluate_outputs, reject_curve, reject_for_error

__all__ = ["Run", "RunData", "evaluate", "evaluate_outputs", "fit", "load_run_data",
           "parse_seeds", "reject_curve", "reject_for_error"]
