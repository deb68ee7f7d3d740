"""Histories recorded while training: loss.jsonl, params.jsonl, snapshots; kill and resume."""

from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest

from lecun1989.analysis.history import (
    BINS,
    LOSS,
    PARAMS,
    PASS_ROWS,
    PASS_ROWS_INDEX,
    PASS_WEIGHTS,
    SNAPSHOTS,
    HistoryRecorder,
    histogram,
    histograms,
    param_density,
    read_jsonl,
    read_loss,
    read_param_history,
    read_pass_weights,
    read_snapshots,
)
from lecun1989.config import apply_overrides, preset
from lecun1989.model.params import PARAM_NAMES, init_params, layer_shapes
from lecun1989.train import checkpoint
from lecun1989.train.loop import RunInterrupted, fit, load_run_data


def test_histogram_has_a_fixed_size_and_the_exact_moments():
    rng = np.random.default_rng(0)
    for n in (5, 10_000):
        v = rng.normal(size=n)
        h = histogram(v)
        assert len(h["counts"]) == BINS and sum(h["counts"]) == n
        assert (h["min"], h["max"]) == (v.min(), v.max())
        assert h["mean"] == pytest.approx(v.mean()) and h["std"] == pytest.approx(v.std())
    flat = histogram(np.zeros(768))  # biases before training: one value
    assert sum(flat["counts"]) == 768 and flat["min"] == flat["max"] == 0


def test_histograms_equal_histogram_of_each_tensor():
    """The recorder's one-pass `histograms` gives what `histogram` gives tensor by tensor:
    real weights in both dtypes, ties, constant tensors, tiny and large ranges."""
    rng = np.random.default_rng(0)
    cases = [[p[n].astype(dtype) for n in PARAM_NAMES]
             for p in (init_params(preset("paper").model, 0),) for dtype in (np.float32,
                                                                            np.float64)]
    cases += [[rng.normal(size=int(rng.integers(1, 300))) * 10.0 ** int(rng.integers(-9, 4))
               for _ in range(5)] for _ in range(50)]
    cases += [[np.round(rng.normal(size=200), 1), np.zeros(7), np.full(3, -0.25),
               rng.integers(-3, 4, 100) / 7, np.array([0.0, 1e-300])]]
    for tensors in cases:
        assert histograms(tensors) == [histogram(t) for t in tensors]
    too_narrow = np.array([1.0, np.nextafter(1.0, 2.0)])  # np.histogram refuses it: so both
    for f in (histogram, lambda t: histograms([t])):
        with pytest.raises(ValueError, match="Too many bins"):
            f(too_narrow)
    # several that np.histogram refuses: the first one's error in list order, as tensor by
    # tensor (the empty one, though the too narrow one shares its size with the first)
    with pytest.raises(ValueError, match="zero-size array"):
        histograms([np.ones(2), np.zeros(0), too_narrow])


def test_param_density_keeps_mass_and_place():
    """Records with different ranges land on one grid; each column sums to 1."""
    records = [{"step": s, "tensors": {"w": histogram(v)}} for s, v in
               ((0, np.zeros(10)), (10, np.full(10, 0.5)), (20, np.linspace(-1, 1, 1000)))]
    steps, edges, density = param_density(records, "w", bins=8)
    assert steps.tolist() == [0, 10, 20] and edges[0] == -1 and edges[-1] == 1
    np.testing.assert_allclose(density.sum(0), 1.0)
    assert density[np.searchsorted(edges, 0.0, "right") - 1, 0] == 1.0  # all zeros: one bin
    assert density[np.searchsorted(edges, 0.5, "right") - 1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(density[:, 2], 1 / 8, atol=0.01)  # uniform stays uniform


def test_recorded_loss_matches_the_run(trained_run):
    loss = read_loss(trained_run.dir)
    history = trained_run.run.loss_history
    assert loss["step"].tolist() == [h["step"] for h in history] == list(range(20, 801, 20))
    np.testing.assert_array_equal(loss["loss"], [h["loss"] for h in history])
    assert loss["pass"].tolist() == [1] * 20 + [2] * 20


def test_parameter_histories_match_the_weights(trained_run):
    cfg, records = trained_run.cfg, read_param_history(trained_run.dir)
    assert [r["step"] for r in records] == list(range(0, 801, 100))
    shapes = layer_shapes(cfg.model)
    first, last = records[0]["tensors"], records[-1]["tensors"]
    initial = init_params(cfg.model, cfg.seed)
    final = checkpoint.load(trained_run.dir)[1]
    for name in PARAM_NAMES:
        assert sum(last[name]["counts"]) == int(np.prod(shapes[name]))
        assert first[name]["max"] == pytest.approx(initial[name].max(), rel=1e-6)
        assert last[name] == histogram(final[name])  # the final weights, exactly
    assert first["h1_w"]["max"] <= 2.4 / 25 * (1 + 1e-6)  # NC89's init bound, F = 25
    assert last["h1_w"]["std"] > first["h1_w"]["std"]  # training moved the weights


def test_history_stays_small_however_long_the_run(trained_run):
    """Each record has a fixed number of values: a 23-pass USPS run stays under a few MB."""
    lines = (trained_run.dir / PARAMS).read_text().splitlines()
    sizes = {len(json.loads(line)["tensors"]["h3_w"]["counts"]) for line in lines}
    assert sizes == {BINS}
    per_record = max(len(line) for line in lines)
    records_23_passes = 23 * 7291 // 1000 + 2  # history_every's default, plus start and end
    assert per_record * records_23_passes < 3_000_000


def test_snapshots_hold_the_full_weights(trained_run):
    steps, snaps = read_snapshots(trained_run.dir)
    assert steps.tolist() == [0, 200, 400, 600, 800]
    final = checkpoint.load(trained_run.dir)[1]
    initial = init_params(trained_run.cfg.model, trained_run.cfg.seed)
    for name in PARAM_NAMES:
        assert snaps[name].shape == (5, *final[name].shape)
        np.testing.assert_array_equal(snaps[name][-1], final[name])
        np.testing.assert_array_equal(snaps[name][0], initial[name].astype(np.float32))


def test_pass_weights_hold_the_initial_and_every_pass_end_weights(trained_run):
    weights = read_pass_weights(trained_run.dir)
    assert len(weights) == trained_run.cfg.train.passes + 1
    initial = init_params(trained_run.cfg.model, trained_run.cfg.seed)
    final = checkpoint.load(trained_run.dir)[1]
    shapes = layer_shapes(trained_run.cfg.model)
    for name in PARAM_NAMES:
        assert weights[0][name].shape == shapes[name]
        np.testing.assert_array_equal(weights[0][name], initial[name].astype(np.float32))
        np.testing.assert_array_equal(weights[-1][name], final[name])
    assert not np.array_equal(weights[1]["h1_w"], weights[0]["h1_w"])  # pass 1 moved them


class PassWeightsSeen:
    """Reads the folder's pass weights after each pass, as the demo page would mid-run."""

    def __init__(self, out):
        self.out, self.seen, self.sizes = out, [], []

    def on_pass(self, pass_index, metrics, engine):
        rows = self.out / PASS_ROWS
        self.sizes.append(rows.stat().st_size if rows.exists() else None)
        self.seen.append((sorted(f.name for f in self.out.glob("pass_weights.*")),
                          read_pass_weights(self.out), engine.params()))


def test_pass_weights_are_appended_pass_by_pass_and_end_as_safetensors(tmp_path, one_thread):
    """Each pass adds its own row to pass_weights.bin (the file grows by one row, never
    rewritten whole); the reader sees the weights so far; the run's end leaves only
    pass_weights.safetensors, equal to those rows. A torn row (a kill mid-append) is
    dropped."""
    cfg = apply_overrides(preset("paper-sgd"), [
        "data.name=digits", "data.limit_train=60", "data.limit_test=30", "passes=3",
        "engine=reference", "loss_every=30", "history_every=60"])
    out = tmp_path / "run"
    watcher = PassWeightsSeen(out)
    fit(cfg, load_run_data(cfg), out, progress=False, log=lambda *a: None,
        callbacks=[HistoryRecorder(out, cfg), watcher])
    row_bytes = sum(int(np.prod(s)) for s in layer_shapes(cfg.model).values()) * 4
    for p, (names, weights, params) in enumerate(watcher.seen[:-1]):
        assert names == [PASS_ROWS, PASS_ROWS_INDEX]  # the .safetensors only at the end
        assert len(weights) == p + 2  # the initial weights and each pass so far
        for name in PARAM_NAMES:
            np.testing.assert_array_equal(weights[-1][name], params[name])
    assert watcher.sizes == [2 * row_bytes, 3 * row_bytes, None]  # one float32 row a pass
    assert sorted(f.name for f in out.glob("pass_weights.*")) == [PASS_WEIGHTS]
    final = read_pass_weights(out)
    assert len(final) == 4
    for a, b in zip(final, [w for _, w, _ in watcher.seen][-2] + [watcher.seen[-1][2]],
                    strict=True):
        for name in PARAM_NAMES:
            np.testing.assert_array_equal(a[name], b[name])
    # a run killed mid-append: its rows are back in pass_weights.bin, the last one torn
    from lecun1989.analysis.history import _start_pass_rows

    _start_pass_rows(out, final[:2])
    assert (out / PASS_ROWS).stat().st_size == 2 * row_bytes
    with open(out / PASS_ROWS, "ab") as f:
        f.write(b"\0" * (row_bytes // 2))
    kept = read_pass_weights(out)
    assert len(kept) == 2 and all(np.array_equal(kept[1][n], final[1][n]) for n in PARAM_NAMES)


def test_a_killed_run_keeps_its_complete_records(trained_run, tmp_path):
    run_dir = tmp_path / "killed"
    shutil.copytree(trained_run.dir, run_dir)
    with open(run_dir / PARAMS, "a") as f:
        f.write('{"step": 900, "tens')  # killed mid-line
    with open(run_dir / SNAPSHOTS, "ab") as f:
        f.write(b"\0" * 100)  # half a record, not yet indexed
    assert [r["step"] for r in read_param_history(run_dir)][-1] == 800
    assert read_snapshots(run_dir)[0].tolist() == [0, 200, 400, 600, 800]


class SigintAt:
    """Interrupt fit as Ctrl-C would, after a given step."""

    def __init__(self, step):
        self.step = step

    def on_steps(self, step, pass_index, losses, engine):
        if step == self.step:
            signal.raise_signal(signal.SIGINT)


def test_an_interrupted_and_resumed_run_records_what_an_uninterrupted_one_does(tmp_path,
                                                                                one_thread):
    cfg = apply_overrides(preset("paper"), [
        "data.name=digits", "data.limit_train=90", "data.limit_test=30", "passes=3",
        "engine=reference", "loss_every=30", "history_every=60", "snapshot_every=120"])
    data = load_run_data(cfg)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    quiet = {"progress": False, "log": lambda *a: None}
    fit(cfg, data, whole, callbacks=[HistoryRecorder(whole, cfg)], **quiet)
    with pytest.raises(RunInterrupted):  # mid-pass 2, between records
        fit(cfg, data, parts, callbacks=[HistoryRecorder(parts, cfg), SigintAt(150)], **quiet)
    assert read_loss(parts)["step"].tolist() == [30, 60, 90]  # flushed at the end of pass 1
    fit(cfg, data, parts, resume=True, callbacks=[HistoryRecorder(parts, cfg)], **quiet)
    assert read_jsonl(parts / LOSS) == read_jsonl(whole / LOSS)
    assert read_param_history(parts) == read_param_history(whole)
    for a, b in zip(read_pass_weights(parts), read_pass_weights(whole), strict=True):
        for name in PARAM_NAMES:
            np.testing.assert_array_equal(a[name], b[name])
    steps, snaps = read_snapshots(parts)
    assert steps.tolist() == read_snapshots(whole)[0].tolist() == [0, 120, 240]
    for name, values in read_snapshots(whole)[1].items():
        np.testing.assert_array_equal(snaps[name], values)


class KilledAtFirstRecord:
    """As SIGKILL would: the run dies after its first checkpoint, before any history."""

    def on_steps(self, step, pass_index, losses, engine):
        raise SystemExit("killed")


def test_a_run_killed_before_its_first_record_resumes_with_complete_histories(tmp_path,
                                                                             one_thread):
    cfg = apply_overrides(preset("paper"), [
        "data.name=digits", "data.limit_train=60", "data.limit_test=30", "passes=2",
        "engine=reference", "loss_every=30", "history_every=60", "snapshot_every=60"])
    data = load_run_data(cfg)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    quiet = {"progress": False, "log": lambda *a: None}
    fit(cfg, data, whole, callbacks=[HistoryRecorder(whole, cfg)], **quiet)
    with pytest.raises(SystemExit):
        fit(cfg, data, parts, callbacks=[KilledAtFirstRecord(), HistoryRecorder(parts, cfg)],
            **quiet)
    assert not (parts / PARAMS).exists() and (parts / "model.safetensors").exists()
    fit(cfg, data, parts, resume=True, callbacks=[HistoryRecorder(parts, cfg)], **quiet)
    assert read_param_history(parts) == read_param_history(whole)
    assert read_param_history(parts)[0]["step"] == 0
    assert read_jsonl(parts / LOSS) == read_jsonl(whole / LOSS)
    assert read_snapshots(parts)[0].tolist() == read_snapshots(whole)[0].tolist()
    for a, b in zip(read_pass_weights(parts), read_pass_weights(whole), strict=True):
        for name in PARAM_NAMES:
            np.testing.assert_array_equal(a[name], b[name])


def _fast_engine_missing() -> str | None:
    try:
        from lecun1989.engines import fast  # noqa: F401
    except ImportError as e:
        return f"the fast engine is not written yet ({e})"
    return None


@pytest.mark.skipif(_fast_engine_missing() is not None, reason=str(_fast_engine_missing()))
def test_both_engines_record_the_same_histories(tmp_path, one_thread):
    runs = {}
    for engine in ("reference", "fast"):
        cfg = apply_overrides(preset("paper"), [
            "data.name=digits", "data.limit_train=120", "data.limit_test=30", "passes=2",
            f"engine={engine}", "loss_every=20", "history_every=40"])
        out = tmp_path / engine
        fit(cfg, load_run_data(cfg), out, progress=False, log=lambda *a: None,
            callbacks=[HistoryRecorder(out, cfg)])
        runs[engine] = (read_loss(out), read_param_history(out))
    (loss_r, hist_r), (loss_f, hist_f) = runs["reference"], runs["fast"]
    assert loss_r["step"].tolist() == loss_f["step"].tolist()
    np.testing.assert_allclose(loss_f["loss"], loss_r["loss"], rtol=1e-4)
    assert [r["step"] for r in hist_r] == [r["step"] for r in hist_f]
    for a, b in zip(hist_r, hist_f, strict=True):
        for name in PARAM_NAMES:
            for key in ("min", "max", "mean", "std"):
                assert b["tensors"][name][key] == pytest.approx(a["tensors"][name][key],
                                                                rel=1e-3, abs=1e-6)


def test_cli_train_records_histories_by_default(tmp_path, one_thread, capsys):
    from lecun1989.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--passes", "1", "--engine", "reference", "--quiet",
                 "--set", "data.limit_train=60", "--set", "data.limit_test=20", "--set",
                 "loss_every=20", "--set", "history_every=40", "--out", str(out)]) == 0
    assert read_loss(out)["step"].tolist() == [20, 40, 60]
    assert [r["step"] for r in read_param_history(out)] == [0, 40, 60]


def test_models_trained_together_record_their_own_histories(tmp_path, one_thread):
    """K models in one engine share one histograms call at each record: each model's
    params.jsonl still holds its own weights' histograms (its snapshot at that step)."""
    cfg = apply_overrides(preset("paper"), [
        "data.name=digits", "data.limit_train=120", "data.limit_test=30", "passes=2",
        "engine=reference", "loss_every=20", "history_every=40", "snapshot_every=40"])
    fit(cfg, load_run_data(cfg), tmp_path, seeds=[0, 1, 2], progress=False,
        log=lambda *a: None, callbacks=lambda c, out: [HistoryRecorder(out, c)])
    finals = []
    for seed in (0, 1, 2):
        out = tmp_path / f"seed-{seed}"
        records, (steps, snaps) = read_param_history(out), read_snapshots(out)
        assert [r["step"] for r in records] == steps.tolist() == [0, 40, 80, 120, 160, 200, 240]
        for i, record in enumerate(records):
            for name in PARAM_NAMES:
                assert record["tensors"][name] == histogram(snaps[name][i])
        finals.append(records[-1]["tensors"]["h1_w"])
    assert finals[0] != finals[1] != finals[2]  # (three different models)
