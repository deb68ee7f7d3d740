"""The fast (Numba) engine against the reference (PyTorch) engine: step for step, whole runs,
predictions, SDLM's second derivatives, K models at once, and its tanh against np.tanh."""

import numpy as np
import pytest

from lecun1989 import data as datasets
from lecun1989.config import apply_overrides, preset
from lecun1989.engines import choose_engine, make_engine
from lecun1989.engines import fast as fast_module
from lecun1989.engines.base import unsupported as why_unsupported
from lecun1989.engines.fast import FastEngine
from lecun1989.engines.reference import ReferenceEngine
from lecun1989.errors import ConfigError
from lecun1989.model import PARAM_NAMES, init_params
from lecun1989.train import checkpoint
from lecun1989.train.loop import RunData, dropout_keep, fit

TOL = {"float64": 1e-10, "float32": 1e-5}  # max |fast - ref| / max |ref|, per tensor
STEPS = 100


@pytest.fixture(scope="module")
def digits() -> RunData:
    """scikit-learn's digits at 16x16: 300 training and 200 test patterns."""
    d = datasets.load("digits")
    return RunData("digits", d.train_images[:300], d.train_labels[:300], d.test_images[:200],
                   d.test_labels[:200])


def _cfg(*overrides):
    return apply_overrides(preset("paper"), ["train.sdlm_samples=60", *overrides])


def unsupported(cfg):
    return why_unsupported(fast_module, [cfg])


def one(cls, cfg, params):
    """An engine of one model."""
    return cls([cfg], [params])


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


LINEAR_CE = ["train.loss=cross_entropy", "model.output_activation=false",
             "train.weight_decay=0.01"]
# A covering set: every option value appears, each dtype with every optimizer.
CASES = [
    ("float64", "sgd", ["model.bias=unit", "model.table=karpathy", "model.pad_value=-1"]),
    ("float64", "sdlm", ["model.bias=map", "model.table=balanced", "model.pad_value=0"]),
    ("float64", "sgd", ["model.bias=map", "model.table=full", "model.tanh_scale=1",
                        "model.tanh_slope=1", "model.output_activation=false"]),
    ("float64", "sdlm", ["model.bias=unit", "model.table=full", "model.tanh_scale=1",
                         "model.tanh_slope=1", "model.conv=unfold"]),
    ("float64", "sdlm", ["model.bias=unit", "model.table=karpathy", "model.pad_value=0",
                         "model.output_activation=false", "train.target=0.8"]),
    ("float32", "sgd", ["model.bias=map", "model.table=balanced", "model.pad_value=0",
                        "model.tanh_scale=1", "model.tanh_slope=1"]),
    ("float32", "sdlm", ["model.bias=unit", "model.table=karpathy"]),
    ("float32", "sdlm", ["model.bias=map", "model.table=full", "model.pad_value=0",
                         "model.output_activation=false"]),
    # the ablation ladder's options: cross-entropy, AdamW, ReLU, dropout
    ("float64", "sgd", ["train.loss=cross_entropy", "model.output_activation=false"]),
    ("float64", "adamw", [*LINEAR_CE, "model.activation=relu", "model.dropout=0.25"]),
    ("float64", "sdlm", [*LINEAR_CE, "model.activation=relu", "model.bias=map"]),
    ("float32", "sgd", [*LINEAR_CE, "model.activation=relu", "model.dropout=0.25"]),
    # float32 AdamW with tanh only: AdamW's update hardly depends on the gradient's size, so a
    # rounding-level difference moves a ReLU unit across its kink (measured: 4.5e-5 after 100
    # steps, against 3e-6 with tanh and 3e-7 with ReLU and SGD); float64 covers ReLU + AdamW
    ("float32", "adamw", [*LINEAR_CE, "model.bias=map", "model.pad_value=0"]),
]
LR = {"sgd": 0.03, "sdlm": 3e-4, "adamw": 3e-4}  # sdlm: eps of eps / (mu + h)


@pytest.mark.parametrize(("dtype", "optimizer", "options"), CASES)
def test_steps_equal_the_reference(digits, dtype, optimizer, options):
    """100 steps: every weight, the losses, SDLM's h and the predictions match the oracle."""
    lr = LR[optimizer]
    cfg = _cfg(f"model.dtype={dtype}", f"train.optimizer={optimizer}", "seed=3", *options)
    params = init_params(cfg.model, cfg.seed)
    fast, ref = one(FastEngine, cfg, params), one(ReferenceEngine, cfg, params)
    x, y = digits.train_images, digits.train_labels
    for engine in (fast, ref):
        engine.begin_pass(0, x, y)
    if optimizer == "sdlm":
        h_fast, h_ref = fast.optimizer_state()[0], ref.optimizer_state()[0]
        assert sorted(h_fast) == sorted(PARAM_NAMES)
        for name in PARAM_NAMES:
            assert h_fast[name].shape == h_ref[name].shape
            assert _rel(h_fast[name], h_ref[name]) < TOL[dtype], name
    keep = dropout_keep(cfg, 0, len(y))
    assert (keep is None) == (cfg.model.dropout == 0)
    keep = None if keep is None else keep[None]
    losses = [e.train_steps(x, y, 0, STEPS, np.array([lr]), keep)[0] for e in (fast, ref)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=100 * TOL[dtype], atol=TOL[dtype])
    new_fast, new_ref = fast.params()[0], ref.params()[0]
    for name in PARAM_NAMES:
        assert new_fast[name].dtype == np.dtype(dtype) and new_fast[name].shape == \
            new_ref[name].shape
        assert _rel(new_fast[name], new_ref[name]) < TOL[dtype], name
        assert not np.array_equal(new_ref[name], params[name]), f"{name} did not train"
    out_fast, out_ref = fast.predict(digits.test_images)[0], ref.predict(digits.test_images)[0]
    assert out_fast.shape == (200, 10) and out_fast.dtype == np.float64
    assert _rel(out_fast, out_ref) < TOL[dtype]


def test_params_round_trip_and_a_fresh_engine_predicts_like_the_reference(digits):
    cfg = _cfg("model.dtype=float64", "model.bias=unit")
    params = init_params(cfg.model, 7)
    params["h1_b"] = np.random.default_rng(0).normal(size=params["h1_b"].shape)  # order matters
    fast = one(FastEngine, cfg, params)
    back = fast.params()[0]
    assert all(np.array_equal(back[n], params[n]) for n in PARAM_NAMES)
    out = fast.predict(digits.test_images)[0]
    np.testing.assert_allclose(out, one(ReferenceEngine, cfg, params).predict(
        digits.test_images)[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sdlm", "adamw"])
def test_optimizer_state_resumes_exactly(digits, optimizer):
    """load_optimizer_state gives an engine that continues exactly like the original."""
    cfg = _cfg("model.dtype=float64", f"train.optimizer={optimizer}")
    x, y = digits.train_images, digits.train_labels
    lr = np.array([1e-3])
    a = one(FastEngine, cfg, init_params(cfg.model, 1))
    if optimizer == "sdlm":
        assert a.optimizer_state() == [{}]  # before the first estimate
    a.begin_pass(0, x, y)
    a.train_steps(x, y, 0, 10, lr)
    b = one(FastEngine, cfg, a.params()[0])
    b.load_optimizer_state(a.optimizer_state())
    la, lb = a.train_steps(x, y, 10, 30, lr), b.train_steps(x, y, 10, 30, lr)
    assert np.array_equal(la, lb)
    assert all(np.array_equal(a.params()[0][n], b.params()[0][n]) for n in PARAM_NAMES)
    fresh = one(FastEngine, cfg, a.params()[0])  # without the state it would not continue alike
    assert not np.array_equal(fresh.train_steps(x, y, 30, 40, lr), a.train_steps(x, y, 30, 40,
                                                                                 lr))
    if optimizer == "adamw":
        assert a.optimizer_state()[0]["step"][0] == 40
        return
    ref = one(ReferenceEngine, cfg, init_params(cfg.model, 1))  # the state is the reference's too
    ref.load_optimizer_state(a.optimizer_state())
    assert ref.optimizer_state()[0].keys() == a.optimizer_state()[0].keys()


@pytest.mark.parametrize("optimizer", ["sgd", "sdlm", "adamw"])
def test_seed_k_of_a_batch_equals_a_single_run_bit_for_bit(digits, optimizer):
    ladder = [*LINEAR_CE, "model.activation=relu"] if optimizer == "adamw" else []
    cfgs = [_cfg("model.dtype=float32", f"train.optimizer={optimizer}", f"seed={s}", *ladder)
            for s in (0, 5, 9)]
    x, y = digits.train_images, digits.train_labels
    batch = FastEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs], threads=2)
    singles = [one(FastEngine, c, init_params(c.model, c.seed)) for c in cfgs]
    for p in range(2):
        batch.begin_pass(p, x, y)
        losses = batch.train_steps(x, y, 0, 150, np.full(3, 0.02))
        assert losses.shape == (3, 150)
        for k, single in enumerate(singles):
            single.begin_pass(p, x, y)
            assert np.array_equal(single.train_steps(x, y, 0, 150, np.array([0.02]))[0],
                                  losses[k])
    outputs = batch.predict(digits.test_images)
    assert outputs.shape == (3, 200, 10)
    for k, single in enumerate(singles):
        assert np.array_equal(single.predict(digits.test_images)[0], outputs[k])
        assert all(np.array_equal(single.params()[0][n], batch.params()[k][n])
                   for n in PARAM_NAMES)
    assert not np.array_equal(outputs[0], outputs[1])  # the seeds differ


def test_a_short_run_gives_the_reference_metrics(digits):
    """fit with engine=fast and engine=reference: the same misses every pass, MSE close."""
    runs = {}
    for engine in ("fast", "reference"):
        cfg = _cfg(f"engine={engine}", "model.dtype=float64", "train.passes=2",
                   "train.loss_every=64")
        runs[engine] = fit(cfg, digits, progress=False, log=lambda s: None).summary
    assert runs["fast"]["engine"] == "fast" and runs["reference"]["engine"] == "reference"
    for a, b in zip(runs["fast"]["passes"], runs["reference"]["passes"], strict=True):
        for split in ("train", "test"):
            assert a[split]["misses"] == b[split]["misses"]
            assert a[split]["mse"] == pytest.approx(b[split]["mse"], rel=1e-9)
            assert a[split]["reject_for_1pct"] == b[split]["reject_for_1pct"]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_seeds_write_the_runs_that_fit_writes(digits, tmp_path, engine):
    """Seed k's folder holds what fit with seed k writes (fast: trained together)."""
    small = RunData("digits", digits.train_images[:120], digits.train_labels[:120],
                    digits.test_images[:50], digits.test_labels[:50])
    cfg = _cfg(f"engine={engine}", "model.dtype=float32", "train.optimizer=sdlm",
               "train.passes=2", "train.loss_every=50", "train.lr=5e-4")
    runs = fit(cfg, small, tmp_path / "seeds", seeds=[4, 2], progress=False,
               log=lambda s: None)
    summaries = [r.summary for r in runs]
    assert [s["seed"] for s in summaries] == [4, 2]
    for seed, summary in zip((4, 2), summaries, strict=True):
        folder = tmp_path / "seeds" / f"seed-{seed}"
        single = fit(apply_overrides(cfg, [f"seed={seed}"]), small, tmp_path / f"single-{seed}",
                     progress=False, log=lambda s: None)
        names = {"config.json", "metrics.jsonl", "summary.json", "model.safetensors"}
        assert names <= {p.name for p in folder.iterdir()}
        assert {p.name for p in folder.iterdir()} == {p.name for p in single.out.iterdir()}
        for a, b in zip(summary["passes"], single.summary["passes"], strict=True):
            assert {**a, "seconds": 0} == {**b, "seconds": 0}
        cfg_a, params_a, extra_a, meta_a = checkpoint.load(folder)
        cfg_b, params_b, extra_b, meta_b = checkpoint.load(single.out)
        assert cfg_a == cfg_b and cfg_a.seed == seed and meta_a == meta_b
        assert all(np.array_equal(params_a[n], params_b[n]) for n in PARAM_NAMES)
        assert all(np.array_equal(extra_a[k], extra_b[k]) for k in extra_b)


@pytest.mark.parametrize(("override", "option", "fallback"), [
    ("model.dropout=0.1", "model.dropout", "lanes"),  # with sdlm (the paper preset)
    ("train.sdlm_estimate=running", "train.sdlm_estimate", "lanes"),
    ("model.input_size=28", "model.input_size", "reference"),  # (lanes: 16x16 only)
])
def test_unsupported_options_are_named_and_auto_falls_back(override, option, fallback):
    cfg = _cfg(override)
    assert option in unsupported(cfg)
    assert choose_engine(cfg)[0] == fallback
    with pytest.raises(ConfigError, match=option.split(".")[1]):
        make_engine("fast", [cfg], [init_params(cfg.model, 0)])


@pytest.mark.parametrize("name", ["paper", "modern-softmax", "modern-relu-dropout"])
def test_auto_picks_the_fast_engine_for_the_paper_and_the_ladder(name):
    assert unsupported(preset(name)) is None
    assert choose_engine(preset(name))[0] == "fast"


def test_a_batch_refuses_configs_that_differ_beyond_its_per_model_fields():
    a, b = _cfg("seed=1"), _cfg("seed=2", "train.sdlm_mu=0.1")
    with pytest.raises(ConfigError, match="sdlm_mu"):
        make_engine("fast", [a, b], [init_params(a.model, 1), init_params(b.model, 2)])
    c = _cfg("seed=2", "train.lr=0.1")  # the step size may differ: the driver passes it
    assert why_unsupported(fast_module, [a, c]) is None


# The kernels' own tanh (no SVML in pip's llvmlite): ulps from np.tanh, as measured.
TANH_ULPS = {("fast", "float64"): 5, ("fast", "float32"): 5, ("lanes", "float64"): 5,
             ("lanes", "float32"): 7}  # lanes float32: Eigen's rational function


@pytest.mark.parametrize(("engine", "dtype"), list(TANH_ULPS))
def test_vectorised_tanh_against_numpy(engine, dtype):
    from lecun1989.engines import _kernels, _lanes_kernels

    tanh_array = (_kernels if engine == "fast" else _lanes_kernels).tanh_array
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-25, 25, 200_001), rng.normal(0, 3, 100_000),
                        np.geomspace(1e-30, 1, 1000), -np.geomspace(1e-30, 1, 1000),
                        [0.0, -0.0, np.inf, -np.inf, 1e30, -1e30]]).astype(dtype)
    out = np.empty_like(x)
    tanh_array(x, out)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= TANH_ULPS[engine, dtype]
    assert np.array_equal(np.sign(out), np.sign(x)) and np.all(np.abs(out) <= 1)
    nan = np.array([np.nan], dtype)
    tanh_array(nan, nan)
    assert np.isnan(nan[0])


def test_one_process_at_a_time_compiles():
    """The compile lock (numba's cache index is not safe against two writers) waits."""
    import threading

    from lecun1989.engines._compile import compile_lock

    order = []

    def other():  # another open file description: flock makes it wait like another process
        with compile_lock():
            order.append("other")

    with compile_lock():
        t = threading.Thread(target=other)
        t.start()
        t.join(0.3)
        order.append("first released")
    t.join(5)
    assert order == ["first released", "other"]


FIRST_RUN = """
import json, sys
import numpy as np
import lecun1989.engines._compile as compile
import lecun1989.engines.fast as fast
from lecun1989.config import apply_overrides, preset
from lecun1989.model import init_params
if sys.argv[2] == "no helpers":
    compile._compile_elsewhere = lambda *args, **kwargs: False
if sys.argv[2] == "late helpers":  # the cache lacks only these types: helpers start on the miss
    compile.compile_early = lambda dtype: None
cfg = apply_overrides(preset("paper"), ["train.sdlm_samples=60"])
d = np.load(sys.argv[1])
engine = fast.FastEngine([cfg], [init_params(cfg.model, 0)])
engine.begin_pass(0, d["x"], d["y"])
losses = engine.train_steps(d["x"], d["y"], 0, 50, np.array([1e-3]))[0]
k = engine.k
print(json.dumps({"losses": losses.tolist(), "early": sorted(compile._EARLY),
                  "run_loaded": sum(k.run.stats.cache_hits.values()),
                  "compiled_here": sum(sum(f.stats.cache_misses.values()) for f in
                                       (k.forward, k.backward))}))
"""


def _first_run(digits, tmp_path, helpers: str) -> tuple[dict, np.ndarray]:
    """A process with an empty numba cache trains 50 steps; so does this one (its kernels come
    from the suite's cache): the child's report and this process's losses."""
    import json
    import os
    import subprocess
    import sys

    x, y = digits.train_images[:60], digits.train_labels[:60]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", FIRST_RUN, str(tmp_path / "d.npz"), helpers],
                         env=env, capture_output=True, text=True, check=True, timeout=900)
    cfg = _cfg()
    engine = one(FastEngine, cfg, init_params(cfg.model, 0))
    engine.begin_pass(0, x, y)
    return json.loads(out.stdout.strip().splitlines()[-1]), engine.train_steps(
        x, y, 0, 50, np.array([1e-3]))[0]


@pytest.mark.parametrize("helpers", ["helpers", "late helpers"])
def test_a_first_run_computes_bit_for_bit_what_later_runs_load(digits, tmp_path, helpers):
    """With an empty cache, helper processes compile the kernels (started with the engine,
    or late: when numba misses `run`) and the run loads them: nothing compiles in the run's
    process, whose numbers equal a cached run's exactly (a process that compiled the kernels
    itself would run other copies, rounded differently)."""
    child, losses = _first_run(digits, tmp_path, helpers)
    assert child["early"] == (["float32"] if helpers == "helpers" else [])
    assert child["run_loaded"] == 1 and child["compiled_here"] == 0
    assert np.array_equal(child["losses"], losses)


def test_the_early_compile_finds_numbas_cache_without_numba(digits, tmp_path, monkeypatch):
    """_cache_lacks_run looks where numba keeps the kernels (here: the suite's cache, which
    holds `run` once an engine has run) and, with NUMBA_CACHE_DIR, only there."""
    from lecun1989.engines import _compile
    from lecun1989.engines.lanes import LanesEngine

    cfg = _cfg()
    one(FastEngine, cfg, init_params(cfg.model, 0)).predict(digits.test_images[:2])
    LanesEngine([cfg], [init_params(cfg.model, 0)]).predict(digits.test_images[:2])
    assert not _compile._cache_lacks_run()
    assert not _compile._cache_lacks_run("_lanes_kernels")  # (what lanes' warm_up asks)
    assert _compile._cache_lacks_run("_no_such_kernels")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _compile._cache_lacks_run() and _compile._cache_lacks_run("_lanes_kernels")


def test_without_helpers_the_engine_compiles_itself(digits, tmp_path):
    """When the helper processes cannot run, the process compiles the kernels: the same
    training up to rounding."""
    child, losses = _first_run(digits, tmp_path, "no helpers")
    assert child["run_loaded"] == 0 and child["compiled_here"] == 2
    # float32 rounding differences, grown over 50 SDLM steps with a large eps (eps/mu 0.05)
    np.testing.assert_allclose(child["losses"], losses, rtol=2e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_helpers_compile_run_for_the_types_the_engine_calls_it_with(digits, dtype):
    """_compiler.run_types is what the engine passes `run` (training, SDLM's estimate,
    prediction), so what the helpers save is what the engine loads."""
    from lecun1989.engines import _compiler

    cfg = apply_overrides(_cfg(), [f"model.dtype={dtype}", "train.sdlm_samples=5"])
    engine = one(FastEngine, cfg, init_params(cfg.model, 0))
    x, y = digits.train_images[:5], digits.train_labels[:5]
    engine.begin_pass(0, x, y)
    engine.train_steps(x, y, 0, 5, np.array([0.01]))
    engine.predict(x)
    k = engine.k
    assert _compiler.run_types(k, dtype, "float32") in k.run.signatures
    every = {_compiler.run_types(k, d, i) for d in _compiler.DTYPES for i in _compiler.DTYPES}
    assert set(k.run.signatures) <= every  # (this process's other engines too)
    assert _compiler.main("run", "unused", dtype, "int8") == 1  # refused: compiles nothing


def test_every_region_starts_on_a_cache_line():
    """The layout's regions are 64-byte aligned in a 64-byte-aligned buffer (misaligned
    regions were slower: BENCHMARKS.md); predict's private copies too."""
    from lecun1989.engines import _kernels as k
    from lecun1989.engines._buffers import aligned_copy

    regions = [v for name, v in vars(k).items() if name.isupper() and isinstance(v, int)
               and name not in ("MAPS", "TAPS", "TP", "XS", "HS", "N1", "N2", "S2", "HP", "OUT",
                                "ALIGN", "TRAIN", "ESTIMATE", "PREDICT")]
    assert len(regions) > 30 and all(r % k.ALIGN == 0 for r in regions)
    for dtype in ("float32", "float64"):
        cfg = _cfg(f"model.dtype={dtype}")
        batch = FastEngine([cfg, _cfg(f"model.dtype={dtype}", "seed=1")],
                           [init_params(cfg.model, s) for s in (0, 1)])
        assert all(row.ctypes.data % 64 == 0 for row in batch.bufs)
        assert aligned_copy(batch.bufs[1]).ctypes.data % 64 == 0
