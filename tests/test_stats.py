"""Statistics over seeds (lecun1989.stats) against numpy's own."""

import numpy as np
import pytest

from lecun1989.stats import STATS, aggregate, describe, interval, paired, summarize


def _summary(rng) -> dict:
    def split():
        misses = int(rng.integers(0, 200))
        return {"mse": float(rng.uniform(0, 0.1)), "error": misses / 2007, "misses": misses,
                "n": 2007, "reject_for_1pct": float(rng.uniform(0, 0.3)), "note": "text",
                "flag": True}
    return {"seconds": 1.0, "final": {"train": split(), "test": split()}}


def test_aggregate_matches_numpy_for_every_metric():
    rng = np.random.default_rng(7)
    summaries = [_summary(rng) for _ in range(7)]
    agg = aggregate(summaries)
    assert set(agg) == {"train", "test"}
    for split in agg:
        assert set(agg[split]) == {"mse", "error", "misses", "n", "reject_for_1pct"}
        for metric, stats in agg[split].items():
            v = np.array([s["final"][split][metric] for s in summaries], dtype=float)
            assert stats["n"] == 7
            assert stats["mean"] == pytest.approx(np.mean(v), rel=1e-12)
            assert stats["sd"] == pytest.approx(np.std(v, ddof=1), rel=1e-12, abs=1e-15)
            assert stats["median"] == pytest.approx(np.median(v), rel=1e-12)
            assert (stats["min"], stats["max"]) == (v.min(), v.max())


def test_describe_even_count_median_and_one_value():
    d = describe([4, 1, 3, 2])
    assert d["median"] == 2.5 and d["mean"] == 2.5 and set(STATS) <= set(d)
    assert d["sd"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    one = describe([0.05])
    assert one["sd"] is None and one["min"] == one["max"] == one["median"] == 0.05


def test_aggregate_refuses_nothing_and_mismatched_summaries():
    with pytest.raises(ValueError):
        aggregate([])
    rng = np.random.default_rng(0)
    a, b = _summary(rng), _summary(rng)
    del b["final"]["test"]["mse"]
    with pytest.raises(ValueError, match="final.test.mse"):
        aggregate([a, b])


def test_the_bootstrap_interval_of_a_mean_is_the_normal_one_for_many_seeds():
    """Oracle: for n draws of a normal variable the mean's bootstrap interval approaches
    mean -+ 1.96 sd / sqrt(n) (the percentile bootstrap's large-sample limit)."""
    v = np.random.default_rng(3).normal(5.0, 2.0, size=400)
    lo, hi = interval(v, np.mean, draws=20_000)
    half = 1.959964 * v.std(ddof=0) / np.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - half, abs=0.04 * half)
    assert hi == pytest.approx(v.mean() + half, abs=0.04 * half)


def test_intervals_hold_their_estimate_are_fixed_by_their_seed_and_refuse_one_value():
    v = [5.1, 5.6, 5.4, 6.0, 5.2, 5.8, 5.5, 5.3]
    lo, hi = interval(v)
    assert lo <= np.median(v) <= hi and min(v) <= lo < hi <= max(v)
    assert interval(v) == (lo, hi)
    w = np.random.default_rng(5).normal(size=30)  # (another resampling: another interval)
    assert interval(w, np.mean, seed=1) != interval(w, np.mean, seed=0)
    assert interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    wide, narrow = interval(v, level=0.99), interval(v, level=0.5)
    assert wide[0] <= lo <= narrow[0] and narrow[1] <= hi <= wide[1]
    s = summarize(v)
    assert s["median"] == np.median(v) and s["median_ci"] == [lo, hi]
    assert s["mean_ci"][0] < np.mean(v) < s["mean_ci"][1]
    assert "median_ci" not in summarize([1.0])
    for bad in ([1.0], []):
        with pytest.raises(ValueError):
            interval(bad)


def test_paired_differences_cancel_what_the_seeds_share():
    """Two arms that differ by 0.1 on every seed while the seeds spread by 1: the paired
    interval is tight around 0.1 where the unpaired spread would hide it."""
    base = np.random.default_rng(0).normal(0, 1, size=10)
    arm = base + 0.1 + np.random.default_rng(1).normal(0, 0.01, size=10)
    p = paired(arm, base)
    assert p["mean"] == pytest.approx(np.mean(arm - base), rel=1e-12)
    assert 0.08 < p["ci"][0] < p["mean"] < p["ci"][1] < 0.12
    assert (p["higher"], p["lower"], p["equal"]) == (10, 0, 0)
    same = paired(base, base)
    assert same["ci"] == [0.0, 0.0] and same["equal"] == 10
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])
