"""The ablation ladder is evaluated correctly: dropout acts in training, not in evaluation."""

import numpy as np
import pytest
import torch

from lecun1989.config import apply_overrides, preset
from lecun1989.engines.reference import ReferenceEngine
from lecun1989.sweeps.run import single_threaded
from lecun1989.train.loop import fit, load_run_data
from lecun1989.train.metrics import evaluate_outputs


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_dropout_is_off_when_evaluating(engine):
    cfg = apply_overrides(preset("modern-relu-dropout"),
                          ["data.name=digits", "data.limit_train=100", "data.limit_test=50",
                           "train.passes=1", f"engine={engine}"])
    data = load_run_data(cfg)
    with single_threaded():
        run = fit(cfg, data, None, progress=False, log=lambda _: None)
    params = run.engine.params()
    outputs = run.engine.predict(data.test_images)
    # the metrics fit recorded are those of a forward pass without dropout
    no_dropout = apply_overrides(preset("modern-relu-dropout"), ["model.dropout=0"])
    plain = ReferenceEngine([no_dropout], [params]).predict(data.test_images)[0]
    np.testing.assert_allclose(outputs, plain, rtol=0, atol=0 if engine == "reference" else 1e-5)
    if engine == "fast":  # float32 against float32: agreeing to rounding, and predicted alike
        assert np.array_equal(outputs.argmax(1), plain.argmax(1))
        return
    assert run.summary["final"]["test"] == evaluate_outputs(plain, data.test_labels)
    # ... while dropout does act in training mode (so the check above could fail)
    model = run.engine.engine.models[0]  # the reference engine's network
    model.train()
    with torch.no_grad():
        noisy = model(torch.from_numpy(data.test_images)).double().numpy()
    assert not np.allclose(noisy, outputs)

