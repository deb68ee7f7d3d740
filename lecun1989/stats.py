"""Statistics over repeated runs (seeds): mean, sd, median, min and max of every final metric,
and percentile-bootstrap intervals over seeds, paired ones for two arms on the same seeds.

    aggregate([run.summary for run in runs])["test"]["error"]["median"]
    interval(errors)                 # (lo, hi): a 95% interval for the median over seeds
    paired(arm_errors, base_errors)  # the mean per-seed difference and its 95% interval
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


BOOTSTRAP_DRAWS = 10_000


def interval(values, statistic=np.median, level: float = 0.95, draws: int = BOOTSTRAP_DRAWS,
             seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the values (one per seed): resample
    the seeds with replacement `draws` times; the (1 - level) / 2 and (1 + level) / 2
    quantiles of the statistic. Fixed `seed`: the same values give the same interval."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"an interval over seeds needs at least 2 numbers, got {values!r}")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be between 0 and 1")
    picks = np.random.default_rng(seed).integers(0, len(v), size=(draws, len(v)))
    stats = statistic(v[picks], axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(values, level: float = 0.95) -> dict:
    """`describe` plus bootstrap intervals of the median and the mean (`interval`)."""
    out = describe(values)
    if out["n"] > 1:
        out["median_ci"] = list(interval(values, np.median, level))
        out["mean_ci"] = list(interval(values, np.mean, level))
    return out


def paired(arm, base, level: float = 0.95) -> dict:
    """Two arms on the same seeds (arm[i] and base[i] from seed i): the per-seed differences
    arm - base, their mean with its bootstrap interval, and how many seeds went each way."""
    a, b = (np.asarray(list(x), dtype=np.float64) for x in (arm, base))
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired needs two equal-length lists (one number per seed), got "
                         f"{a.shape} and {b.shape}")
    d = a - b
    lo, hi = interval(d, np.mean, level)
    return {"n": len(d), "mean": float(d.mean()), "ci": [lo, hi],
            "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
            "higher": int((d > 0).sum()), "lower": int((d < 0).sum()),
            "equal": int((d == 0).sum()), "differences": [float(x) for x in d]}
