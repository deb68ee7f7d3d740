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
    top2 = np.sort(outputs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def reject_curve(outputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error on the accepted digits as the least confident ones are rejected, one at a time.

    NC89 §5 rejects on the difference between the two largest outputs. Returns
    (rejected fraction, error among the rest) for 0, 1, ..., N-1 rejected digits.
    """
    order = np.argsort(margins(outputs), kind="stable")  # least confident first
    wrong = (outputs.argmax(1) != labels)[order]
    n = len(labels)
    kept_wrong = wrong.sum() - np.concatenate([[0], np.cumsum(wrong)[:-1]])
    kept = n - np.arange(n)
    return np.arange(n) / n, kept_wrong / kept


def reject_for_error(outputs: np.ndarray, labels: np.ndarray, error: float = 0.01) -> float:
    """Smallest fraction to reject so the error on the rest is at most `error` (NC89: 12.1%)."""
    rejected, err = reject_curve(outputs, labels)
    ok = np.nonzero(err <= error + 1e-12)[0]
    return float(rejected[ok[0]]) if len(ok) else 1.0


def reject_threshold(outputs: np.ndarray, labels: np.ndarray, error: float = 0.01) -> float:
    """The margin below which `reject_for_error` rejects: reject a digit if margin < this."""
    k = round(reject_for_error(outputs, labels, error) * len(labels))
    m = np.sort(margins(outputs))
    if k == 0:
        return 0.0
    if k >= len(m):
        return float(np.nextafter(m[-1], np.inf))
    return float((m[k - 1] + m[k]) / 2)  # halfway between the last rejected and first kept


def evaluate_outputs(outputs: np.ndarray, labels: np.ndarray, target: float = 1.0) -> dict:
    """The paper's metrics for a set of network outputs."""
    outputs = np.asarray(outputs, dtype=np.float64)
    mse = float(np.mean((outputs - targets(labels, target)) ** 2))
    misses = int((outputs.argmax(1) != labels).sum())
    return {
        "mse": mse,
        "mse_half": mse / 2,
        "error": misses / len(labels),
        "misses": misses,
        "n": int(len(labels)),
        "reject_for_1pct": reject_for_error(outputs, labels, 0.01),
        "reject_threshold_1pct": reject_threshold(outputs, labels, 0.01),
    }
