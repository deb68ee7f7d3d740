"""The reference engine and the shared driver: one SGD step by hand, determinism, metrics."""

import json
import threading

import numpy as np
import pytest
import torch

from lecun1989.config import apply_overrides, preset
from lecun1989.engines.reference import ReferenceEngine
from lecun1989.errors import UserError
from lecun1989.model import Net1989, init_params
from lecun1989.train import checkpoint
from lecun1989.train.loop import RunData, fit, load_run_data, lr_at, pass_data, stall_warnings
from lecun1989.train.metrics import (
    evaluate_outputs,
    reject_curve,
    reject_for_error,
    reject_threshold,
    targets,
)


def _digits(n_train=120, n_test=60, seed=0):
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(-0.6, 0.6, size=(n_train + n_test, 1, 16, 16)), -1, 1)
    y = rng.integers(0, 10, size=n_train + n_test)
    for i, label in enumerate(y):  # a learnable signal: a bright bar whose row is the label
        x[i, 0, label + 3, 2:14] = 1.0
    x = x.astype(np.float32)
    return RunData("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def test_one_sgd_step_equals_a_hand_computed_step():
    """The output layer by hand (NC89's MSE, scaled tanh), the rest by autograd."""
    cfg = apply_overrides(preset("paper-sgd"), ["model.dtype=float64", "train.lr=0.05"])
    data = _digits()
    params = init_params(cfg.model, cfg.seed)
    engine = ReferenceEngine([cfg], [params])
    x, label = data.train_images[:1], int(data.train_labels[0])
    model = Net1989(cfg.model)
    model.load_numpy_params(params)
    layers = {k: v.detach().double().numpy()[0] for k, v in model.layers(
        torch.from_numpy(x)).items()}
    h3, y = layers["h3"], layers["out"]
    A, S = cfg.model.tanh_scale, cfg.model.tanh_slope
    a = np.arctanh(y / A) / S  # total input of the output units
    t = -np.ones(10)
    t[label] = 1
    dE_da = 2 * (y - t) / 10 * A * S * (1 - np.tanh(S * a) ** 2)  # E = mean_k (y_k - t_k)^2
    loss = engine.train_steps(data.train_images, data.train_labels, 0, 1, np.array([0.05]))[0]
    assert loss[0] == pytest.approx(np.mean((y - t) ** 2), rel=1e-12)
    new = engine.params()[0]
    np.testing.assert_allclose(new["out_w"], params["out_w"] - 0.05 * np.outer(dE_da, h3),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(new["out_b"], params["out_b"] - 0.05 * dE_da, rtol=1e-12,
                               atol=1e-15)
    # every other parameter moved by exactly -lr times autograd's gradient
    out = model(torch.from_numpy(x))
    grads = torch.autograd.grad(torch.mean((out - torch.from_numpy(t)) ** 2),
                                list(model.parameters()))
    for (name, _p), g in zip(model.named_parameters(), grads, strict=True):
        np.testing.assert_allclose(new[name], params[name] - 0.05 * g.numpy(), rtol=1e-12,
                                   atol=1e-15)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    data = _digits()
    runs = []
    for seed in (0, 0, 1):
        cfg = apply_overrides(preset("paper"), ["passes=2", f"seed={seed}", "engine=reference"])
        runs.append(fit(cfg, data, progress=False, log=lambda s: None))
    p = [r.engine.params() for r in runs]
    assert all(np.array_equal(p[0][k], p[1][k]) for k in p[0])
    assert runs[0].summary["final"] == runs[1].summary["final"]
    assert not np.array_equal(p[0]["h1_w"], p[2]["h1_w"])


def test_fit_learns_and_writes_a_complete_run_folder(tmp_path):
    cfg = apply_overrides(preset("karpathy"), ["passes=3", "engine=reference", "lr=0.05"])
    data = _digits()
    run = fit(cfg, data, tmp_path / "run", progress=False, log=lambda s: None)
    s = json.loads((tmp_path / "run/summary.json").read_text())
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and [json.loads(x)["pass"] for x in lines] == [1, 2, 3]
    assert s["final"]["train"]["error"] < 0.5  # it learned the bars
    assert s["passes"][-1]["train"]["mse"] < s["passes"][0]["train"]["mse"]
    assert {"preset", "data", "engine", "seconds", "passes", "final", "mse_convention"} <= set(s)
    for split in ("train", "test"):
        m = s["final"][split]
        assert m["misses"] == round(m["error"] * m["n"])
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["versions"]["torch"].startswith("2.13.0")
    cfg2, params, _, meta = checkpoint.load(tmp_path / "run")
    assert cfg2 == cfg and meta["pass"] == 3
    assert all(np.array_equal(params[k], v) for k, v in run.engine.params().items())
    from safetensors.torch import load_file  # no pickle involved
    assert load_file(str(tmp_path / "run/model.safetensors"))["h1_w"].shape == (12, 1, 5, 5)


class PassLog:
    """A callback noting each on_pass's thread; `fail` (a pass) makes it raise there."""

    def __init__(self, seed, calls, concurrent, fail=None):
        self.seed, self.calls, self.concurrent, self.fail = seed, calls, concurrent, fail

    def on_pass(self, pass_index, metrics, engine):
        self.calls.append((self.seed, pass_index, threading.current_thread().name))
        if pass_index == self.fail:
            raise UserError(f"seed {self.seed} failed at pass {pass_index + 1}")


def test_models_end_their_passes_on_threads_only_when_every_callback_allows(tmp_path):
    """`concurrent` callbacks: each model's end of pass on a thread of its own, the folders
    equal to those of the models one after the other; any other callback: in model order,
    on the calling thread. A failure is raised after every model has ended its pass (each
    has its checkpoint of that pass), the first in model order."""
    cfg = apply_overrides(preset("paper"), ["passes=2", "engine=reference"])
    data = _digits()
    folders = {}
    for concurrent in (True, False):
        calls = []
        fit(cfg, data, tmp_path / str(concurrent), seeds=[0, 1, 2], progress=False,
            log=lambda s: None, callbacks=lambda c, out, calls=calls, concurrent=concurrent:
            [PassLog(c.seed, calls, concurrent)])
        threads = {name for *_, name in calls}
        main = threading.current_thread().name
        assert (main not in threads) if concurrent else (threads == {main})
        if not concurrent:
            assert [c[:2] for c in calls] == [(s, p) for p in (0, 1) for s in (0, 1, 2)]
        folders[concurrent] = {
            f.relative_to(tmp_path / str(concurrent)): f.read_bytes()
            for f in sorted((tmp_path / str(concurrent)).rglob("*"))
            if f.is_file() and f.suffix == ".safetensors"}
    assert folders[True] == folders[False] and len(folders[True]) == 3

    calls = []
    with pytest.raises(UserError, match="seed 1 failed at pass 1"):
        fit(cfg, data, tmp_path / "failing", seeds=[0, 1, 2, 3], progress=False,
            log=lambda s: None, callbacks=lambda c, out: [
                PassLog(c.seed, calls, True, fail=0 if c.seed in (1, 2) else None)])
    assert sorted(c[:2] for c in calls) == [(s, 0) for s in (0, 1, 2, 3)]
    for seed in (0, 3):  # the models beside the failing ones ended pass 1: its checkpoint
        assert checkpoint.load(tmp_path / "failing" / f"seed-{seed}")[3]["pass"] == 1


def test_metrics_match_a_direct_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    outputs = rng.normal(size=(500, 10)) + 2.5 * targets(labels)  # ~5% wrong
    m = evaluate_outputs(outputs, labels)
    assert m["misses"] == int((outputs.argmax(1) != labels).sum())
    assert m["mse"] == pytest.approx(np.mean((outputs - targets(labels)) ** 2))
    assert m["mse_half"] == pytest.approx(m["mse"] / 2)
    rejected, err = reject_curve(outputs, labels)
    assert rejected[0] == 0 and err[0] == pytest.approx(m["error"])
    # brute force: reject the k least confident digits, count errors on the rest
    top = np.sort(outputs, 1)
    margin = top[:, -1] - top[:, -2]
    for k in (0, 17, 250, 499):
        keep = np.argsort(margin, kind="stable")[k:]
        assert err[k] == pytest.approx((outputs[keep].argmax(1) != labels[keep]).mean())
    r = reject_for_error(outputs, labels, 0.01)
    k = round(r * 500)
    assert err[k] <= 0.01 and (k == 0 or err[k - 1] > 0.01)


def test_evaluate_outputs_rejects_as_the_reject_functions_do():
    """evaluate_outputs sorts the margins once for both reject figures: the same numbers as
    reject_for_error and reject_threshold, ties and all-right sets included."""
    rng = np.random.default_rng(1)
    for n, scale, decimals in ((500, 1.0, None), (300, 1.0, 1), (40, 0.1, None), (7, 3.0, 0)):
        labels = rng.integers(0, 10, n)
        outputs = rng.normal(size=(n, 10)) * scale + 2.5 * targets(labels)
        if decimals is not None:
            outputs = np.round(outputs, decimals)  # ties in the margins
        m = evaluate_outputs(outputs, labels)
        assert m["reject_for_1pct"] == reject_for_error(outputs, labels, 0.01)
        assert m["reject_threshold_1pct"] == reject_threshold(outputs, labels, 0.01)


def test_perfect_outputs_need_no_rejection():
    labels = np.arange(10).repeat(3)
    assert reject_for_error(targets(labels), labels) == 0.0


def test_lr_schedule_and_fixed_order():
    cfg = apply_overrides(preset("paper"), ["lr=0.1", "lr_schedule=[[2, 0.01], [5, 0.001]]"])
    assert [lr_at(cfg, p, 0, 10) for p in (0, 1, 2, 4, 5, 9)] == [0.1, 0.1, 0.01, 0.01,
                                                                 0.001, 0.001]
    data = _digits()
    x, y = pass_data(cfg, 3, data.train_images, data.train_labels)
    assert x is data.train_images and y is data.train_labels  # NC89: the same order each pass
    cfg = apply_overrides(cfg, ["shuffle=true", "augment_shift=1"])
    x1, y1 = pass_data(cfg, 3, data.train_images, data.train_labels)
    x2, y2 = pass_data(cfg, 4, data.train_images, data.train_labels)
    assert sorted(y1) == sorted(data.train_labels) and not np.array_equal(y1, y2)
    assert x1.min() >= -1 and x1.max() <= 1


def test_a_run_that_goes_nowhere_says_why_once(one_thread):
    """SDLM with SGD's step size (train.lr is SDLM's eps in `paper`) pins every output: the
    run says so after the pass, once, naming the cause and the preset's value; a good run
    says nothing."""
    said = []
    bad = apply_overrides(preset("paper"), ["data.name=digits", "data.limit_train=1500",
                                            "data.limit_test=100", "train.passes=2",
                                            "train.lr=0.01"])
    fit(bad, load_run_data(bad), progress=False, log=said.append)
    warnings = [line for line in said if "not learning" in line]
    assert len(warnings) == 1 and "pinned at +-1.7159" in warnings[0]
    assert "train.lr=0.0004" in warnings[0] and "SDLM" in warnings[0]
    said.clear()
    good = apply_overrides(bad, ["train.lr=4e-4"])
    fit(good, load_run_data(good), progress=False, log=said.append)
    assert not [line for line in said if "not learning" in line]


def test_stall_warnings_read_the_outputs_and_the_error():
    cfg = preset("paper-sgd")
    pinned = np.full((1, 20, 10), -1.7159)
    records = [{"pass": 1, "step": 100, "train": {"error": 0.9}}]
    assert "pinned" in stall_warnings(cfg, pinned, records)[0]
    quiet = np.zeros((1, 20, 10))
    assert stall_warnings(cfg, quiet, records) == [None]  # too early to tell
    late = [{"pass": 3, "step": 20_000, "train": {"error": 0.85}}]
    assert "no better than guessing" in stall_warnings(cfg, quiet, late)[0]
    assert stall_warnings(cfg, quiet, [{"pass": 3, "step": 20_000,
                                        "train": {"error": 0.3}}]) == [None]


def test_device_cuda_is_refused_in_one_line_without_a_gpu(monkeypatch):
    from lecun1989.engines import choose_engine, device_of
    from lecun1989.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = apply_overrides(preset("paper"), ["engine=reference", "device=cuda"])
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        choose_engine(cfg)
    auto = apply_overrides(preset("paper"), ["engine=reference", "device=auto"])
    assert choose_engine(auto)[0] == "reference" and device_of("reference", auto) == "cpu"
    with pytest.raises(ConfigError, match="no engine can train"):  # auto: fast is CPU code
        choose_engine(apply_overrides(preset("paper"), ["device=cuda"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_reference_engine_on_cuda_equals_the_cpu():
    """The notebook's get_device(): on a GPU the reference trains there, with the same numbers
    up to float64 rounding."""
    data = _digits()
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = apply_overrides(preset("paper"), ["engine=reference", f"device={device}",
                                                "model.dtype=float64", "train.sdlm_samples=20"])
        engine = ReferenceEngine([cfg], [init_params(cfg.model, 0)])
        engine.begin_pass(0, data.train_images, data.train_labels)
        engine.train_steps(data.train_images, data.train_labels, 0, 50, np.array([1e-4]))
        runs[device] = engine.params()[0]
    for name, value in runs["cpu"].items():
        np.testing.assert_allclose(runs["cuda"][name], value, rtol=1e-9, atol=1e-12)
