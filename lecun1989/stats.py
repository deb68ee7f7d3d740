"""Statistics over repeated runs (seeds): mean, sd, median, min and max of every final metric.

    aggregate([run.summary for run in runs])["test"]["error"]["median"]
"""

from __future__ import annotations

from numbers import Real

import numpy as np

STATS = ("mean", "sd", "median", "min", "max")


def describe(values) -> dict:
    """n, mean, sd (sample, ddof=1; None for one value), median, min and max of numbers."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"describe needs a non-empty list of numbers, got {values!r}")
    return {"n": len(v), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def aggregate(summaries: list[dict]) -> dict:
    """`describe` of every number in summary["final"], keyed as it is: {"test": {"error": ...}}."""
    if not summaries:
        raise ValueError("aggregate needs at least one run summary")
    finals = [s["final"] for s in summaries]
    out = {}
    for split, metrics in finals[0].items():
        out[split] = {}
        for name, value in metrics.items():
            if isinstance(value, Real) and not isinstance(value, bool):
                out[split][name] = describe(_get(finals, split, name))
    return out


def _get(finals: list[dict], split: str, name: str) -> list:
    try:
        return [f[split][name] for f in finals]
    except KeyError as e:
        raise ValueError(f"a run summary lacks final.{split}.{name}; cannot aggregate") from e
