"""SDLM (EB98 §9.1) against brute-force Jacobians, finite differences and a step by hand.

What is proved, in float64: the output layer's and H3's h equal diag(J^T H J) of the whole
network (exact Gauss-Newton); every layer's rule (H2 with its table, shared weights and both
bias kinds; H1 with its padding) equals diag(J^T D J) of that layer's own Jacobian; the chain
is exact end to end on a single-path network; deeper in the real network it is NOT the exact
diagonal (the approximation EB98 makes).
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call, jacrev

from lecun1989 import data as datasets
from lecun1989.config import ModelConfig, TrainConfig, apply_overrides, preset
from lecun1989.engines.reference import ReferenceEngine, sample_loss
from lecun1989.model.net import PARAM_NAMES, Net1989, init_params
from lecun1989.model.tables import connection_table
from lecun1989.optim import sdlm
from lecun1989.train import checkpoint
from lecun1989.train.loop import RunData, fit

F64 = torch.float64
VARIANTS = {  # test 6: tables, bias kinds, padding values, both tanh's, linear outputs
    "karpathy-unit-pad-1": {},  # the paper preset's structure
    "balanced-map-pad0": {"table": "balanced", "bias": "map", "pad_value": 0.0},
    "full-plain-tanh": {"table": "full", "tanh_scale": 1.0, "tanh_slope": 1.0},
    "linear-out": {"output_activation": False, "init": "2.4/sqrt(F)"},
}


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """Eight real 16x16 digits in [-1, 1], float64."""
    return torch.from_numpy(datasets.load("digits").train_images[:8]).to(F64)


def make_model(seed: int = 0, **model) -> Net1989:
    """A float64 Net1989; weights 2.4/sqrt(F) and uniform biases unless given."""
    model = {"init": "2.4/sqrt(F)", "bias_init": "uniform", **model, "dtype": "float64"}
    return Net1989(ModelConfig(**model), seed=seed)


def brute_gauss_newton(model: Net1989, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """diag(J^T H J) summed over patterns, J from jacrev of the outputs, H = (2/10) I (MSE)."""
    params = {n: getattr(model, n).detach() for n in PARAM_NAMES}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for x in images:
        jac = jacrev(lambda p, x=x: functional_call(model, p, (x[None],))[0])(params)
        for n in PARAM_NAMES:
            total[n] += (2 / 10) * (jac[n] ** 2).sum(0)
    return total


def assert_close(ours, ref, what=""):
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-15, msg=lambda m: f"{what}: {m}")


# --- 1 and 3: the whole network against brute force --------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_output_and_h3_layers_are_exact_gauss_newton(variant, digits):
    model = make_model(1, **VARIANTS[variant])
    ours = sdlm.gauss_newton_diagonal(model, digits[:3], TrainConfig())
    ref = brute_gauss_newton(model, digits[:3])
    for n in ("out_w", "out_b", "h3_w", "h3_b"):
        assert_close(ours[n], ref[n], n)
    # deeper, EB98 drops cross terms: NOT the exact diagonal (the approximation, as documented)
    for n in ("h2_w", "h1_w"):
        assert not torch.allclose(ours[n], ref[n], rtol=1e-3), n


def single_path(model: Net1989, seed: int) -> None:
    """Zero weights so that every output sees the image through one chain of units.

    Output k reads only H3 unit k, which reads one H2 unit; each H2 kernel has one non-zero
    tap, so an H2 unit reads one H1 unit (or padding). No parameter reaches an output by two
    paths, so EB98's dropped cross terms are all zero and the rule is exact end to end.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        keep = torch.zeros_like(model.out_w)
        keep[torch.arange(10), torch.arange(10)] = 1
        model.out_w.mul_(keep)
        keep = torch.zeros_like(model.h3_w)
        keep[torch.arange(30), torch.randint(0, model.h3_w.shape[1], (30,), generator=gen)] = 1
        model.h3_w.mul_(keep)
        keep = torch.zeros_like(model.h2_w).flatten(1)
        keep[torch.arange(12), torch.randint(0, keep.shape[1], (12,), generator=gen)] = 1
        model.h2_w.mul_(keep.reshape(model.h2_w.shape))


@pytest.mark.parametrize("variant", ["karpathy-unit-pad-1", "balanced-map-pad0", "full-plain-tanh"])
def test_rule_is_exact_end_to_end_on_a_single_path_network(variant, digits):
    model = make_model(2, **VARIANTS[variant])
    single_path(model, seed=3)
    ours = sdlm.gauss_newton_diagonal(model, digits[:3], TrainConfig())
    ref = brute_gauss_newton(model, digits[:3])
    for n in PARAM_NAMES:
        assert ref[n].abs().max() > 0, n  # every layer carries curvature
        assert_close(ours[n], ref[n], n)


# --- 2: each layer's rule against that layer's own Jacobian -------------------------------

def brute_layer(fn, args: dict, d2a: torch.Tensor) -> dict[str, torch.Tensor]:
    """diag(J^T D J) for each argument of a = fn(**args), one pattern, D = diag(d2a)."""
    jac = jacrev(lambda a: fn(**a))(args)  # each: (*a.shape, *arg.shape)
    out = {}
    for k, v in args.items():
        weighted = d2a.reshape(*d2a.shape, *(1,) * v.ndim) * jac[k] ** 2
        out[k] = weighted.flatten(0, d2a.ndim - 1).sum(0)
    return out


def test_dense_layer_rule():
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=gen, dtype=F64) for s in [(3, 7), (5, 7), (5,)])
    d2a = torch.rand(3, 5, generator=gen, dtype=F64)
    h_w, h_b, d2x = sdlm.dense_curvature(x, w, d2a)
    ref = [brute_layer(lambda x, w, b: x @ w.T + b, {"x": x[n], "w": w, "b": b}, d2a[n])
           for n in range(3)]
    assert_close(h_w, sum(r["w"] for r in ref))
    assert_close(h_b, sum(r["b"] for r in ref))
    assert_close(d2x, torch.stack([r["x"] for r in ref]))


@pytest.mark.parametrize("table", ["karpathy", "balanced", "full", [[j, (j + 5) % 12] for j in
                                                                     range(12)]])
@pytest.mark.parametrize("bias", ["unit", "map"])
@pytest.mark.parametrize("pad", [-1.0, 0.0])
def test_h2_layer_rule_with_table_shared_weights_and_biases(table, bias, pad):
    t = torch.from_numpy(connection_table(table))
    gen = torch.Generator().manual_seed(1)
    y1 = torch.randn(2, 12, 8, 8, generator=gen, dtype=F64)
    w = torch.randn(12, t.shape[1], 5, 5, generator=gen, dtype=F64)
    b = torch.randn((12, 4, 4) if bias == "unit" else (12, 1, 1), generator=gen, dtype=F64)
    d2a = torch.rand(2, 12, 4, 4, generator=gen, dtype=F64)

    def a2(y1, w, b):  # H2's total input, written independently of the model and of sdlm
        x2 = F.pad(y1, (2, 2, 2, 2), value=pad)[t.reshape(-1)]
        return F.conv2d(x2[None], w, stride=2, groups=12)[0] + b

    x2 = F.pad(y1, (2, 2, 2, 2), value=pad)
    h_w, h_b, d2y1 = sdlm.h2_curvature(x2, w, t, d2a, b.shape)
    ref = [brute_layer(a2, {"y1": y1[n], "w": w, "b": b}, d2a[n]) for n in range(2)]
    assert_close(h_w, sum(r["w"] for r in ref), "h2_w")
    assert_close(h_b, sum(r["b"] for r in ref), "h2_b")
    assert_close(d2y1, torch.stack([r["y1"] for r in ref]), "d2E/dy1^2")


@pytest.mark.parametrize("bias", ["unit", "map"])
@pytest.mark.parametrize("pad", [-1.0, 0.0])
def test_h1_layer_rule_counts_the_padding(bias, pad, digits):
    gen = torch.Generator().manual_seed(2)
    x = digits[:2]
    w = torch.randn(12, 1, 5, 5, generator=gen, dtype=F64)
    b = torch.randn((12, 8, 8) if bias == "unit" else (12, 1, 1), generator=gen, dtype=F64)
    d2a = torch.rand(2, 12, 8, 8, generator=gen, dtype=F64)

    def a1(w, b, x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), value=pad)[None], w, stride=2)[0] + b

    x1 = F.pad(x, (2, 2, 2, 2), value=pad)
    h_w, h_b, _ = sdlm.conv_curvature(x1, w, d2a, b.shape)
    ref = [brute_layer(lambda w, b, n=n: a1(w, b, x[n]), {"w": w, "b": b}, d2a[n])
           for n in range(2)]
    assert_close(h_w, sum(r["w"] for r in ref), "h1_w")
    assert_close(h_b, sum(r["b"] for r in ref), "h1_b")
    # with curvature at the corner unit only, the corner tap sees padding alone: pad^2 * D
    corner = torch.zeros_like(d2a)
    corner[:, :, 0, 0] = d2a[:, :, 0, 0]
    h_w, _, _ = sdlm.conv_curvature(x1, w, corner, b.shape)
    assert_close(h_w[:, 0, 0, 0], d2a[:, :, 0, 0].sum(0) * pad ** 2)


@pytest.mark.parametrize("model_kw", [{}, {"tanh_scale": 1.0, "tanh_slope": 1.0},
                                      {"tanh_scale": 1.716}, {"activation": "relu"}])
def test_activation_rule_is_f_prime_squared(model_kw):
    cfg = ModelConfig(**model_kw)
    model = Net1989(cfg)
    a = torch.linspace(-4, 4, 81, dtype=F64)
    d2y = torch.rand(81, dtype=F64, generator=torch.Generator().manual_seed(0))
    fprime = torch.vmap(torch.func.grad(lambda a: model.act(a)))(a)
    assert_close(sdlm.activation_curvature(d2y, model.act(a), cfg), fprime ** 2 * d2y)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "mse-sum"])
def test_loss_rule_is_the_diagonal_of_the_loss_hessian(loss):
    cfg = TrainConfig(loss=loss.split("-")[0], loss_reduction="sum" if "sum" in loss else "mean")
    out = torch.randn(4, 10, dtype=F64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 7, 9])
    rc = dataclasses.replace(preset("paper"), train=cfg)
    for n in range(4):
        hess = jacrev(jacrev(lambda o, n=n: sample_loss(o[None], labels[n:n + 1], rc)))(out[n])
        assert_close(sdlm.loss_curvature(out, cfg)[n], torch.diagonal(hess))


# --- 4: finite differences and positivity -------------------------------------------------

def test_output_layer_h_is_the_finite_difference_second_derivative(digits):
    rc = preset("paper")
    rc.model = ModelConfig(output_activation=False, dtype="float64", init="2.4/sqrt(F)")
    model = Net1989(rc.model, seed=4)
    x, label = digits[5:6], torch.tensor([3])
    h = sdlm.gauss_newton_diagonal(model, x, rc.train)
    params = {n: getattr(model, n).detach() for n in PARAM_NAMES}
    for name in ("out_w", "out_b"):
        def loss(p, name=name):  # the whole network's loss as a function of one parameter
            return sample_loss(functional_call(model, {**params, name: p}, (x,)), label, rc)

        grad_of_loss = torch.func.grad(loss)
        p, delta = params[name], 1e-3
        steps = delta * torch.eye(p.numel(), dtype=F64).reshape(-1, *p.shape)
        g_plus, g_minus = (torch.vmap(grad_of_loss)(p + sign * steps) for sign in (1, -1))
        fd = torch.diagonal((g_plus - g_minus).reshape(p.numel(), -1)) / (2 * delta)
        torch.testing.assert_close(h[name].reshape(-1), fd, rtol=1e-9, atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), table=st.sampled_from(["karpathy", "balanced", "full"]),
       bias=st.sampled_from(["unit", "map"]), pad=st.sampled_from([-1.0, 0.0]),
       activation=st.sampled_from(["tanh", "relu"]), output_activation=st.booleans(),
       loss=st.sampled_from(["mse", "cross_entropy"]),
       init=st.sampled_from(["2.4/F", "2.4/sqrt(F)"]))
def test_h_is_never_negative(seed, table, bias, pad, activation, output_activation, loss, init):
    model = make_model(seed, table=table, bias=bias, pad_value=pad, activation=activation,
                       output_activation=output_activation, init=init)
    images = torch.rand(3, 1, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(seed))
    h = sdlm.gauss_newton_diagonal(model, images * 2 - 1, TrainConfig(loss=loss))
    for n in PARAM_NAMES:
        assert h[n].shape == getattr(model, n).shape
        assert torch.isfinite(h[n]).all() and (h[n] >= 0).all(), n


def test_batched_estimate_is_the_mean_of_per_sample_ones(digits):
    model = make_model(5)
    cfg = TrainConfig()
    mean = sdlm.average_curvature(model, digits.numpy(), cfg, batch=3)
    for n in PARAM_NAMES:
        each = [sdlm.gauss_newton_diagonal(model, digits[i:i + 1], cfg)[n] for i in range(8)]
        assert_close(mean[n], torch.stack(each).mean(0), n)


# --- 5: one step of the engine, by hand ---------------------------------------------------

def test_one_sdlm_step_of_the_engine_equals_a_step_by_hand(digits):
    rc = preset("paper")
    rc.model.dtype = "float64"
    rc.train.optimizer, rc.train.sdlm_samples, rc.train.sdlm_mu = "sdlm", 4, 0.02
    params = init_params(rc.model, seed=0)
    images, labels = digits.numpy()[:6], np.array([0, 1, 2, 3, 4, 5])
    engine = ReferenceEngine([rc], [params])
    with torch.no_grad():
        y3 = engine.models[0].layers(torch.from_numpy(images))["h3"].numpy()
    engine.begin_pass(0, images, labels)
    lr = 5e-4
    engine.train_steps(images, labels, 0, 1, np.array([lr]))
    new = engine.params()[0]

    # numpy, by hand: NC89's output units y = A tanh(S a), E = mean_k (y_k - t_k)^2
    big_a, s, w, b = 1.7159, 2 / 3, params["out_w"], params["out_b"]
    a = y3 @ w.T + b
    fprime = big_a * s * (1 - np.tanh(s * a) ** 2)
    h_w = np.mean(0.2 * fprime[:4, :, None] ** 2 * y3[:4, None, :] ** 2, axis=0)
    h_b = np.mean(0.2 * fprime[:4] ** 2, axis=0)
    t = np.full(10, -1.0)
    t[labels[0]] = 1.0
    delta = 0.2 * (big_a * np.tanh(s * a[0]) - t) * fprime[0]  # dE/da of pattern 0
    np.testing.assert_allclose(new["out_w"], w - lr * np.outer(delta, y3[0]) / (0.02 + h_w),
                               rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(new["out_b"], b - lr * delta / (0.02 + h_b), rtol=1e-13)
    # every parameter moved by exactly -lr * g / (mu + h), h as estimated
    model = Net1989(rc.model)
    model.load_numpy_params(params)
    ps = [getattr(model, n) for n in PARAM_NAMES]
    loss = sample_loss(model(torch.from_numpy(images[:1])), torch.from_numpy(labels[:1]), rc)
    grads = torch.autograd.grad(loss, ps)
    hs = engine.optimizer_state()[0]
    for n, g in zip(PARAM_NAMES, grads, strict=True):
        np.testing.assert_allclose(new[n], params[n] - lr * g.numpy() / (0.02 + hs[n]),
                                   rtol=1e-13, atol=1e-17, err_msg=n)


@pytest.mark.parametrize("optimizer", ["sdlm", "sgd"])
def test_a_summed_loss_is_the_mean_with_other_constants(digits, optimizer):
    """E_sum = 10 E_mean: SDLM with (eps, mu) on the sum takes the steps of (eps, mu / 10) on
    the mean, SGD with lr those of 10 lr (config.loss_reduction: only what the constants
    mean changes); both differ from the mean with the same constants."""
    images, labels = digits.numpy(), np.arange(len(digits)) % 10

    def run(reduction, lr, mu):
        rc = apply_overrides(preset("paper"), [
            "model.dtype=float64", f"train.optimizer={optimizer}", "train.sdlm_samples=4",
            f"train.loss_reduction={reduction}", f"train.sdlm_mu={mu}"])
        engine = ReferenceEngine([rc], [init_params(rc.model, seed=2)])
        engine.begin_pass(0, images, labels)
        losses = engine.train_steps(images, labels, 0, len(images), np.array([lr]))
        return losses[0], engine.params()[0]

    lr = 1e-4 if optimizer == "sdlm" else 0.003
    sum_losses, summed = run("sum", lr, 0.02)
    mean_losses, mean = run("mean", lr if optimizer == "sdlm" else 10 * lr, 0.002)
    np.testing.assert_allclose(sum_losses, 10 * mean_losses, rtol=1e-12)
    for n in PARAM_NAMES:
        np.testing.assert_allclose(summed[n], mean[n], rtol=1e-10, atol=1e-14, err_msg=n)
    _, same_constants = run("mean", lr, 0.02)
    assert not np.allclose(summed["out_w"], same_constants["out_w"], rtol=1e-6)


def test_the_running_estimate_mixes_each_pattern_in_before_its_step(digits):
    """sdlm_estimate=running: after a step on pattern 0, h = (1 - g) h0 + g h(pattern 0 at
    the weights before the step), h0 the first pass's estimate; a new pass keeps it."""
    rc = apply_overrides(preset("paper"), ["model.dtype=float64", "train.sdlm_samples=4",
                                           "train.sdlm_estimate=running",
                                           "train.sdlm_decay=0.25"])
    params = init_params(rc.model, seed=0)
    images, labels = digits.numpy()[:6], np.arange(6)
    engine = ReferenceEngine([rc], [params])
    engine.begin_pass(0, images, labels)
    h0 = engine.optimizer_state()[0]
    engine.train_steps(images, labels, 0, 1, np.array([1e-4]))
    model = Net1989(rc.model)
    model.load_numpy_params(params)
    one = sdlm.gauss_newton_diagonal(model, torch.from_numpy(images[:1]), rc.train)
    h1 = engine.optimizer_state()[0]
    for n in PARAM_NAMES:
        np.testing.assert_allclose(h1[n], 0.75 * h0[n] + 0.25 * one[n].numpy(), rtol=1e-13,
                                   atol=1e-300, err_msg=n)
        assert not np.array_equal(h1[n], h0[n]), n
    engine.begin_pass(1, images, labels)  # running: no re-estimate at a new pass
    assert all(np.array_equal(engine.optimizer_state()[0][n], h1[n]) for n in PARAM_NAMES)


def test_state_round_trip_and_step_before_estimate():
    model = make_model(0)
    opt = sdlm.SDLM(TrainConfig(optimizer="sdlm"), model)
    ps = [getattr(model, n) for n in PARAM_NAMES]
    with pytest.raises(RuntimeError, match="begin_pass"):
        opt.step(ps, [torch.zeros_like(p) for p in ps], 1e-3)
    assert opt.state_dict() == {}
    images = np.random.default_rng(0).uniform(-1, 1, (5, 1, 16, 16)).astype(np.float32)
    opt.begin_pass(model, 0, images, np.zeros(5, dtype=np.int64))
    again = sdlm.SDLM(TrainConfig(optimizer="sdlm"), model)
    again.load_state_dict({k: v.float() for k, v in opt.state_dict().items()})
    grads = [torch.ones_like(p) for p in ps]
    before = [p.detach().clone() for p in ps]
    again.step(ps, grads, 1e-3)
    for n, p, p0 in zip(PARAM_NAMES, ps, before, strict=True):
        torch.testing.assert_close(p0 - p, 1e-3 / (0.02 + opt.h[n].float().double()))


# --- end to end: `--set optimizer=sdlm` through the shared driver -------------------------

def test_fit_with_sdlm_trains_and_checkpoints_h(tmp_path):
    d = datasets.load("digits")
    data = RunData("digits", d.train_images[:60], d.train_labels[:60],
                   d.test_images[:20], d.test_labels[:20])
    cfg = apply_overrides(preset("paper"), ["optimizer=sdlm", "lr=1e-3", "sdlm_mu=0.02",
                                            "passes=3",
                                            "sdlm_samples=30", "loss_every=60",
                                            "engine=reference"])
    run = fit(cfg, data, tmp_path / "run", progress=False, log=lambda *_: None)
    losses = [r["loss"] for r in run.loss_history]  # one mean loss per pass
    assert losses[2] < losses[1] < losses[0]
    _, _, extra, _ = checkpoint.load(tmp_path / "run")
    h = sdlm.average_curvature(run.engine.engine.models[0], data.train_images[:30], cfg.train)
    for n in PARAM_NAMES:  # the h of the last pass, estimated at the weights it started with
        assert extra[f"optimizer/{n}"].shape == run.engine.params()[n].shape
        assert (extra[f"optimizer/{n}"] >= 0).all()
        assert not np.array_equal(extra[f"optimizer/{n}"], h[n].numpy()), n
