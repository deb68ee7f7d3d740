"""The lanes engine (K models in SIMD lanes) against the reference engine (PyTorch), lane by
lane and step by step; a lane's numbers whatever lanes share its engine; optimizer state
round trips; what the engine refuses."""

import numpy as np
import pytest

from lecun1989 import data as datasets
from lecun1989.config import RunConfig, apply_overrides, preset
from lecun1989.engines import lanes as lanes_module
from lecun1989.engines._lanes_kernels import LANES
from lecun1989.engines.base import config_fields
from lecun1989.engines.base import unsupported as why_unsupported
from lecun1989.engines.lanes import SUPPORTS, LanesEngine
from lecun1989.engines.reference import ReferenceEngine
from lecun1989.errors import ConfigError
from lecun1989.model import PARAM_NAMES, init_params
from lecun1989.train.loop import dropout_keep

# max |lanes - reference| / max |reference|, per tensor, after STEPS steps. float64: the two
# differ in rounding only (measured <= 3e-14). float32: rounding differences (6e-8 a step)
# grow through the steps, each update feeding the next; measured up to 5e-6 after 200 steps (AdamW)
# (the fast engine: 1e-5 after 100), so 2e-5 (ReLU with AdamW excepted, see CASES).
TOL = {"float64": 1e-10, "float32": 2e-5}
STEPS = 200


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits at 16x16: 300 training and 200 test patterns."""
    d = datasets.load("digits")
    return d.train_images[:300], d.train_labels[:300], d.test_images[:200]


def _cfg(*overrides):
    return apply_overrides(preset("paper"), ["train.sdlm_samples=60", *overrides])


def unsupported(cfgs):
    return why_unsupported(lanes_module, cfgs)


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _reference(cfg, params, x, y, lr, steps, keep, test_images) -> dict:
    """One model on the reference engine: SDLM's h after begin_pass, the losses of `steps`
    steps, the parameters and the test outputs after them (the oracle, in one place)."""
    ref = ReferenceEngine([cfg], [params])
    ref.begin_pass(0, x, y)
    h = ref.optimizer_state()[0]
    losses = ref.train_steps(x, y, 0, steps, np.array([lr]), None if keep is None else keep[None])
    return {"h": h, "losses": losses[0], "params": ref.params()[0],
            "outputs": ref.predict(test_images)[0]}


LINEAR_CE = ["train.loss=cross_entropy", "model.output_activation=false",
             "train.weight_decay=0.01"]
# Every option value appears; each dtype with every optimizer (as the fast engine's tests).
CASES = [
    ("float64", "sgd", ["model.bias=unit", "model.table=karpathy", "model.pad_value=-1"]),
    ("float64", "sdlm", ["model.bias=map", "model.table=balanced", "model.pad_value=0"]),
    ("float64", "sgd", ["model.bias=map", "model.table=full", "model.tanh_scale=1",
                        "model.tanh_slope=1", "model.output_activation=false"]),
    ("float64", "sdlm", ["model.table=[[0,1,2],[1,2,3],[2,3,4],[3,4,5],[4,5,6],[5,6,7],"
                         "[6,7,8],[7,8,9],[8,9,10],[9,10,11],[10,11,0],[11,0,1]]",
                         "model.conv=unfold"]),
    ("float64", "sgd", ["train.loss=cross_entropy", "model.output_activation=false"]),
    ("float64", "adamw", [*LINEAR_CE, "model.activation=relu", "model.dropout=0.25"]),
    ("float64", "sdlm", [*LINEAR_CE, "model.activation=relu", "model.bias=map"]),
    ("float64", "sdlm", ["model.dropout=0.2"]),
    ("float32", "sgd", ["model.bias=map", "model.table=balanced", "model.pad_value=0",
                        "model.tanh_scale=1", "model.tanh_slope=1"]),
    ("float32", "sdlm", ["model.bias=unit", "model.table=karpathy"]),
    ("float32", "sdlm", ["model.bias=map", "model.table=full", "model.pad_value=0",
                         "model.output_activation=false"]),
    ("float32", "sgd", [*LINEAR_CE, "model.activation=relu", "model.dropout=0.25"]),
    # float32 AdamW with tanh only: AdamW's step hardly depends on the gradient's size, so a
    # rounding-level difference moves a ReLU unit across its kink (the fast engine's tests
    # measured 4.5e-5 after 100 steps); float64 covers ReLU + AdamW
    ("float32", "adamw", [*LINEAR_CE, "model.bias=map", "model.pad_value=0"]),
    # the rule's open variants: the running estimate of h, the MSE summed over the outputs
    # (mu 10 times as large keeps the steps those of the mean's cases: with mu = 0.02 the
    # summed loss takes 10 times larger steps, units saturate, and f' = (S/A)(A^2 - y^2)
    # magnifies the rounding of y by 1 / (A^2 - y^2): 1e-7 apart after 200 steps)
    ("float64", "sdlm", ["train.sdlm_estimate=running", "train.loss_reduction=sum",
                         "train.sdlm_mu=0.2"]),
    ("float32", "sdlm", ["train.sdlm_estimate=running", "train.loss_reduction=sum",
                         "train.sdlm_mu=0.2"]),
    ("float64", "sgd", ["train.loss_reduction=sum"]),
]
LR = {"sgd": 0.03, "sdlm": 3e-4, "adamw": 3e-4}  # sdlm: eps of eps / (mu + h)
# Two lanes that differ in every per-model setting: seed, lr (below), mu, the running
# estimate's weight, target, init
LANE_SETTINGS = [["seed=3"],
                 ["seed=8", "train.sdlm_mu=0.05", "train.sdlm_decay=0.05", "train.target=0.8",
                  "model.init=2.4/sqrt(F)",
                  "model.bias_init=uniform", "model.output_bias_init=-0.5"]]


@pytest.mark.parametrize(("dtype", "optimizer", "options"), CASES)
def test_every_lane_equals_the_reference(digits, dtype, optimizer, options):
    """STEPS steps: every lane's losses, weights, SDLM's h and outputs match its own
    reference run, with the lanes' seeds, lr, mu, target and init all different."""
    x, y, test_images = digits
    cfgs = [_cfg(f"model.dtype={dtype}", f"train.optimizer={optimizer}", *options, *lane)
            for lane in LANE_SETTINGS]
    lrs = np.array([LR[optimizer], LR[optimizer] * 0.6])
    if optimizer == "sgd" and "train.loss_reduction=sum" in options:
        lrs /= 10  # the summed loss's gradient is 10 times the mean's: the same steps
    params = [init_params(c.model, c.seed) for c in cfgs]
    keep = [dropout_keep(c, 0, len(y)) for c in cfgs]
    engine = LanesEngine(cfgs, params)
    engine.begin_pass(0, x, y)
    h = engine.optimizer_state()
    losses = engine.train_steps(x, y, 0, STEPS, lrs, None if keep[0] is None else np.stack(keep))
    assert losses.shape == (2, STEPS) and losses.dtype == np.float64
    outputs, after = engine.predict(test_images), engine.params()
    assert outputs.shape == (2, 200, 10) and outputs.dtype == np.float64
    tol = TOL[dtype]
    for lane, cfg in enumerate(cfgs):
        ref = _reference(cfg, params[lane], x, y, lrs[lane], STEPS, keep[lane], test_images)
        if optimizer == "sdlm":
            assert sorted(h[lane]) == sorted(PARAM_NAMES)
            for name in PARAM_NAMES:
                assert h[lane][name].shape == ref["h"][name].shape
                assert _rel(h[lane][name], ref["h"][name]) < tol, name
        np.testing.assert_allclose(losses[lane], ref["losses"], rtol=100 * tol, atol=tol)
        for name in PARAM_NAMES:
            assert after[lane][name].dtype == np.dtype(dtype)
            assert after[lane][name].shape == ref["params"][name].shape
            assert _rel(after[lane][name], ref["params"][name]) < tol, (lane, name)
            assert not np.array_equal(ref["params"][name], params[lane][name]), name
        assert _rel(outputs[lane], ref["outputs"]) < tol
    assert not np.allclose(losses[0], losses[1])  # the lanes did differ


@pytest.mark.parametrize(("dtype", "optimizer", "options"), [
    ("float32", "sdlm", []),
    ("float64", "adamw", [*LINEAR_CE, "model.activation=relu", "model.dropout=0.25"]),
    ("float32", "sgd", ["train.loss=cross_entropy", "model.output_activation=false"]),
])
def test_a_lane_is_the_same_bit_for_bit_whatever_shares_its_engine(digits, dtype, optimizer,
                                                                   options):
    """Model A alone (K=1) and as model 21 of 37 (block 1, lane 5, others with other seeds
    and settings): the same losses, h, weights and outputs, bit for bit."""
    x, y, test_images = digits
    base = [f"model.dtype={dtype}", f"train.optimizer={optimizer}", *options]
    a = _cfg(*base, "seed=11", "train.target=0.9")
    others = [_cfg(*base, f"seed={s}", f"train.sdlm_mu={0.01 * (1 + s % 3)}")
              for s in range(36)]
    cfgs = [*others[:21], a, *others[21:]]
    lr = np.array([1e-3 * (1 + i % 5) for i in range(37)])
    lr[21] = 2e-3
    keep = None
    if cfgs[0].model.dropout:
        keep = np.stack([dropout_keep(c, 0, len(y)) for c in cfgs])
    alone = LanesEngine([a], [init_params(a.model, a.seed)])
    many = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs])
    assert many.bufs.shape[0] == 3 and 21 // LANES == 1
    for engine in (alone, many):
        engine.begin_pass(0, x, y)
    for start, stop in ((0, 70), (70, 150)):
        la = alone.train_steps(x, y, start, stop, lr[21:22], None if keep is None else keep[21:22])
        lm = many.train_steps(x, y, start, stop, lr, keep)
        assert np.array_equal(la[0], lm[21])
    for state_a, state_m in ((alone.optimizer_state()[0], many.optimizer_state([21])[0]),
                             (alone.params()[0], many.params([21])[0])):
        assert state_a.keys() == state_m.keys() and (state_a or optimizer == "sgd")
        assert all(np.array_equal(state_a[n], state_m[n]) for n in state_a)
    outputs = many.predict(test_images, [21, 0])
    assert np.array_equal(alone.predict(test_images)[0], outputs[0])
    assert not np.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_is_each_models_alone_in_either_layout(digits, dtype, monkeypatch):
    """`predict` in the blocks' layout, or with LANES patterns of one model in the lanes and
    the (model, patterns) pieces shared by the threads: 19 models (two blocks), 37 patterns
    (a last piece of 5), a subset in any order, 1 to 3 threads (shares that end inside a
    model). Each model's outputs are the same bits in every case, those of the model in an
    engine of its own, and the reference's."""
    x, y, test_images = digits
    cfgs = [_cfg(f"model.dtype={dtype}", f"seed={s}", f"train.sdlm_mu={0.01 * (1 + s % 3)}")
            for s in range(19)]
    many = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs])
    many.begin_pass(0, x, y)
    many.train_steps(x, y, 0, 40, 1e-3)
    images, models = test_images[:37], [18, 3, 3, 0, 16]
    params = many.params(models)
    outputs = []
    for rows_cost in (0.0, 1e9):  # the rows layout always, never
        monkeypatch.setattr(lanes_module, "ROWS_COST", rows_cost)
        for threads in (1, 2, 3):
            many.threads, many._pool = threads, None
            outputs.append(many.predict(images, models))
    assert outputs[0].shape == (5, 37, 10) and outputs[0].dtype == np.float64
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])
    for out, m, p in zip(outputs[0], models, params, strict=True):
        alone = LanesEngine([cfgs[m]], [p], threads=1).predict(images)[0]
        assert np.array_equal(out, alone)
        reference = ReferenceEngine([cfgs[m]], [p]).predict(images)[0]
        assert _rel(out, reference) < TOL[dtype]
    assert not np.array_equal(outputs[0][0], outputs[0][3])  # the models do differ
    for rows_cost in (0.0, 1e9):
        monkeypatch.setattr(lanes_module, "ROWS_COST", rows_cost)
        assert many.predict(images[:0]).shape == (19, 0, 10)


@pytest.mark.parametrize("optimizer", ["sdlm", "adamw", "sdlm-running"])
def test_optimizer_state_resumes_exactly(digits, optimizer):
    """Save after 10 steps, load into a fresh engine, continue: bit-identical to going on."""
    x, y, _ = digits
    running = ["train.sdlm_estimate=running"] if optimizer == "sdlm-running" else []
    optimizer = optimizer.split("-")[0]
    cfgs = [_cfg("model.dtype=float64", f"train.optimizer={optimizer}", f"seed={s}", *running)
            for s in (1, 2)]
    a = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs])
    if optimizer == "sdlm":
        assert a.optimizer_state() == [{}, {}]  # before the first estimate
    a.begin_pass(0, x, y)
    a.train_steps(x, y, 0, 10, 1e-3)
    b = LanesEngine(cfgs, a.params())
    b.load_optimizer_state(a.optimizer_state())
    b.begin_pass(1, x, y)  # (running: keeps the loaded h; a new pass re-estimates it otherwise)
    a.begin_pass(1, x, y)
    assert np.array_equal(a.train_steps(x, y, 10, 30, 1e-3), b.train_steps(x, y, 10, 30, 1e-3))
    for pa, pb in zip(a.params(), b.params(), strict=True):
        assert all(np.array_equal(pa[n], pb[n]) for n in PARAM_NAMES)
    fresh = LanesEngine(cfgs, a.params())  # without the state it would not continue alike
    assert not np.array_equal(fresh.train_steps(x, y, 30, 40, 1e-3),
                              a.train_steps(x, y, 30, 40, 1e-3))
    state = a.optimizer_state()[1]
    if optimizer == "adamw":
        assert state["step"][0] == 40 and len(state) == 2 * len(PARAM_NAMES) + 1
        return
    ref = ReferenceEngine([cfgs[1]], [a.params()[1]])  # the state is the reference's too
    ref.load_optimizer_state([state])
    assert ref.optimizer_state()[0].keys() == state.keys()


def test_every_config_field_is_declared():
    assert set(config_fields(RunConfig())) == set(SUPPORTS)


@pytest.mark.parametrize(("cfgs", "named"), [
    ([["model.input_size=28"]], "model.input_size"),
    ([["seed=1", "train.shuffle=true"], ["seed=2", "train.shuffle=true"]], "train.shuffle"),
    ([["seed=1", "train.augment_shift=1"], ["seed=2"]], "train.augment_shift"),
    ([["seed=1"], ["seed=2", "train.optimizer=sgd"]], "train.optimizer"),
    ([["seed=1"], ["seed=1", "model.dtype=float64"]], "model.dtype"),
    ([["seed=1"], ["seed=1", "train.sdlm_samples=30"]], "train.sdlm_samples"),
])
def test_unsupported_names_what_it_refuses(cfgs, named):
    cfgs = [_cfg(*c) for c in cfgs]
    reason = unsupported(cfgs)
    assert reason is not None and named in reason and "\n" not in reason
    with pytest.raises(ConfigError, match=named):
        LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs])


def test_what_a_lane_may_hold_is_accepted():
    cfgs = [_cfg("seed=1"), _cfg("seed=2", "train.lr=0.1", "train.sdlm_mu=0.1",
                                "train.target=0.7", "model.init=2.4/sqrt(F)",
                                "train.lr_schedule=[[0,1e-4]]", "preset=paper-sgd")]
    assert unsupported(cfgs) is None
    shuffled = [_cfg("seed=4", "train.shuffle=true", f"train.lr={lr}") for lr in (0.1, 0.2)]
    assert unsupported(shuffled) is None  # one seed: the same patterns for all
    assert unsupported([preset("modern-relu-dropout")]) is None


def test_dropout_without_masks_is_refused(digits):
    x, y, _ = digits
    cfg = _cfg("model.dropout=0.25")
    engine = LanesEngine([cfg], [init_params(cfg.model, 0)])
    with pytest.raises(ConfigError, match="keep"):
        engine.train_steps(x, y, 0, 5, 1e-3)



@pytest.mark.slow
def test_the_helper_compiles_run_into_an_empty_cache(tmp_path, monkeypatch):
    """A first-ever run compiles `run` in a helper process (the compiling process would run
    it slower) and saves it where this process's numba would load it from."""
    from lecun1989.engines.lanes import _compile_elsewhere

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _compile_elsewhere("float64", "float32")
    assert list(tmp_path.glob("*/_lanes_kernels.run-*.nbi"))
    assert not _compile_elsewhere("float16", "float32")  # fails cleanly: False
