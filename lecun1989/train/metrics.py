"""What the paper measures: MSE, error rate, misses and the reject rate for 1% error (NC89 §5)."""

from __future__ import annotations

import numpy as np

MSE_CONVENTION = ("mse: mean over the 10 outputs and all patterns of (output - target)^2, "
                  "targets +1/-1; mse_half: the same times 1/2")


# How each metric is written, wherever it is shown: the terminal, the report, the sweep table.
METRIC_FORMATS = {"error": "{:.2%}", "reject_for_1pct": "{:.1%}", "misses": "{:,.0f}",
                  "mse": "{:.2e}", "mse_half": "{:.2e}", "reject_threshold_1pct": "{:.3f}",
                  "n": "{:,.0f}", "seconds": "{:.1f}"}


def format_metric(name: str, value) -> str:
    """A metric's value as every table shows it ("n/a" when missing)."""
    if value is None:
        return "n/a"
    return METRIC_FORMATS.get(name, "{:g}").format(value)


def targets(labels: np.ndarray, value: float = 1.0, classes: int = 10) -> np.ndarray:
    """Target vectors: +value at the label, -value elsewhere (NC89: the quasi-linear range)."""
    t = np.full((len(labels), classes), -value)
    t[np.arange(len(labels)), labels] = value
    return t


def margins(outputs: np.ndarray) -> np.ndarray:
    """Difference of the two largest outputs of each pattern: NC89 §5 rejects on it."""
    top2 = np.partition(outputs, -2, axis=1)[:, -2:]  # [second largest, largest]
    return top2[:, 1] - top2[:, 0]


def reject_curve(outputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error on the accepted digits as the least confident ones are rejected, one at a time.

    NC89 §5 rejects on the difference between the two largest outputs. Returns
    (rejected fraction, error among the rest) for 0, 1, ..., N-1 rejected digits.
    """
    return _reject_curve(margins(outputs), outputs.argmax(1) != labels)[:2]


def _reject_curve(m: np.ndarray, wrong: np.ndarray):
    """reject_curve from each pattern's margin and miss; also the margins in that order
    (least confident first: sorted)."""
    order = np.argsort(m, kind="stable")  # least confident first
    wrong = wrong[order]
    n = len(m)
    kept_wrong = wrong.sum() - np.concatenate([[0], np.cumsum(wrong)[:-1]])
    kept = n - np.arange(n)
    return np.arange(n) / n, kept_wrong / kept, m[order]


def reject_for_error(outputs: np.ndarray, labels: np.ndarray, error: float = 0.01) -> float:
    """Smallest fraction to reject so the error on the rest is at most `error` (NC89: 12.1%)."""
    return _reject(margins(outputs), outputs.argmax(1) != labels, error)[0]


def reject_threshold(outputs: np.ndarray, labels: np.ndarray, error: float = 0.01) -> float:
    """The margin below which `reject_for_error` rejects: reject a digit if margin < this."""
    return _reject(margins(outputs), outputs.argmax(1) != labels, error)[1]


def _reject(m: np.ndarray, wrong: np.ndarray, error: float) -> tuple[float, float]:
    """(reject_for_error, reject_threshold) from each pattern's margin and miss: one sort of
    the margins serves both (evaluate_outputs runs for every set after every pass)."""
    rejected, err, m = _reject_curve(m, wrong)  # m: sorted
    ok = np.nonzero(err <= error + 1e-12)[0]
    fraction = float(rejected[ok[0]]) if len(ok) else 1.0
    k = round(fraction * len(m))
    if k == 0:
        threshold = 0.0
    elif k >= len(m):
        threshold = float(np.nextafter(m[-1], np.inf))
    else:
        threshold = float((m[k - 1] + m[k]) / 2)  # halfway: the last rejected, the first kept
    return fraction, threshold


def evaluate_outputs(outputs: np.ndarray, labels: np.ndarray, target: float = 1.0) -> dict:
    """The paper's metrics for a set of network outputs."""
    outputs = np.asarray(outputs, dtype=np.float64)
    mse = float(np.mean((outputs - targets(labels, target)) ** 2))
    wrong = outputs.argmax(1) != labels
    misses = int(wrong.sum())
    reject, threshold = _reject(margins(outputs), wrong, 0.01)
    return {
        "mse": mse,
        "mse_half": mse / 2,
        "error": misses / len(labels),
        "misses": misses,
        "n": int(len(labels)),
        "reject_for_1pct": reject,
        "reject_threshold_1pct": threshold,
    }
