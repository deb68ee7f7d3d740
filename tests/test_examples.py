"""The examples run, short, and produce what they promise."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lecun1989 import paper
from lecun1989.analysis.history import read_loss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_notebook_walkthrough_runs_short_and_makes_sense(tmp_path, monkeypatch, restore_threads):
    monkeypatch.setenv("LECUN1989_EXAMPLE_SHORT", "1")
    monkeypatch.setenv("LECUN1989_EXAMPLE_OUT", str(tmp_path))
    done = runpy.run_path(str(EXAMPLES / "notebook_walkthrough.py"), run_name="__main__")
    assert done["max_diff"] < 1e-9  # the unfold/fold convolution is F.conv2d
    assert (done["counts"]["units"], done["counts"]["connections"],
            done["counts"]["parameters"]) == (paper.UNITS, paper.CONNECTIONS, paper.PARAMETERS)
    loss = read_loss(tmp_path / "run")
    assert len(loss["step"]) == 600 // 20 and loss["loss"][-5:].mean() < loss["loss"][:5].mean()
    assert done["final"]["test"]["error"] < 0.8  # better than guessing (0.9)
    prediction = done["prediction"]
    assert 0 <= prediction.digit <= 9 and len(prediction.outputs) == 10
    assert prediction.rejected == (prediction.margin < prediction.threshold)
    for name in ("digits", "loss", "params", "feature_maps"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.size[0] >= 600 and np.asarray(im.convert("L")).std() > 10, name
