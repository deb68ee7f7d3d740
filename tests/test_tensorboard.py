"""Optional TensorBoard logs: a one-line error without the package; the run's numbers with it."""

from __future__ import annotations

import sys

import pytest

from lecun1989.analysis.history import read_jsonl, read_loss
from lecun1989.cli.main import main

TRAIN = ["train", "--data", "digits", "--passes", "2", "--engine", "reference", "--quiet",
         "--set", "data.limit_train=60", "--set", "data.limit_test=40", "--set", "loss_every=20",
         "--set", "history_every=40", "--tensorboard"]


def test_without_tensorboard_the_flag_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install tensorboard" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()  # failed before training


def test_tensorboard_logs_hold_the_runs_numbers(tmp_path, one_thread, capsys):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run_dir)]) == 0
    events = EventAccumulator(str(run_dir / "tensorboard"),
                              size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    loss = read_loss(run_dir)
    logged = events.Scalars("loss/train")
    assert [e.step for e in logged] == loss["step"].tolist()
    assert [e.value for e in logged] == pytest.approx(loss["loss"].tolist(), rel=1e-6)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [e.value for e in events.Scalars("error/test")] == pytest.approx(
        [m["test"]["error"] for m in metrics], rel=1e-6)
    tags = events.Tags()
    assert {f"params/{n}" for n in ("h1_w", "h2_b", "out_w")} <= set(tags["histograms"])
    assert [e.step for e in events.Histograms("params/h1_w")] == [20, 40, 80, 120]
    assert {"pictures/loss", "pictures/reject", "pictures/feature_maps"} <= set(tags["images"])
