"""Statistics over seeds (lecun1989.stats) against numpy's own."""

import numpy as np
import pytest

from lecun1989.stats import STATS, aggregate, describe


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
