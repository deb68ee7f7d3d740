"""Net1989 against the paper's counts and PyTorch's own convolution."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lecun1989 import paper
from lecun1989.config import ModelConfig, preset
from lecun1989.errors import ConfigError
from lecun1989.model import Net1989, connection_table, count, init_params, table_mask
from lecun1989.model.params import fan_in, layer_shapes


def test_paper_counts_are_measured_from_the_model():
    c = count(Net1989(preset("paper").model))
    assert (c["units"], c["connections"], c["parameters"]) == (
        paper.UNITS, paper.CONNECTIONS, paper.PARAMETERS)
    # multiply-accumulates: every connection but the biases
    assert c["macs"] == c["connections"] - (c["units"] - 16 * 16)


def test_per_map_biases_and_full_table_change_the_counts():
    c = count(Net1989(ModelConfig(bias="map", table="full")))
    # per-map biases: 12 + 12 instead of 768 + 192; full table: 12*12*25 H2 weights
    assert c["parameters"] == 12 * 25 + 12 + 12 * 12 * 25 + 12 + 5790 + 310
    assert c["connections"] == 768 * 26 + 192 * (300 + 1) + 5790 + 310


@pytest.mark.parametrize("groups,cin,cout", [(1, 1, 12), (12, 96, 12), (12, 144, 12), (3, 6, 9)])
def test_unfold_conv_equals_conv2d_values_and_gradients(groups, cin, cout):
    from lecun1989.model import unfold_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, cin, 12, 12, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin // groups, 5, 5, generator=g, dtype=torch.float64,
                    requires_grad=True)
    ours = unfold_conv2d(x, w, stride=2, groups=groups)
    ref = F.conv2d(x, w, stride=2, groups=groups)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn_like(ref)
    gx, gw = torch.autograd.grad((ours * up).sum(), (x, w))
    rx, rw = torch.autograd.grad((ref * up).sum(), (x, w))
    torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, rw, rtol=1e-12, atol=1e-12)


def test_native_and_unfold_networks_agree():
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    a = Net1989(ModelConfig(conv="native", dtype="float64"), seed=3)(x)
    b = Net1989(ModelConfig(conv="unfold", dtype="float64"), seed=3)(x)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("table", ["karpathy", "balanced", "full"])
def test_connection_table_masks_exactly_the_right_inputs(table):
    """Perturbing H1 map i changes H2 map j if and only if the table connects them."""
    model = Net1989(ModelConfig(table=table, dtype="float64"), seed=1)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 2 - 1
    h1 = model.layers(x)["h1"]

    def h2_from(h1):
        p = F.pad(h1, (2,) * 4, value=model.cfg.pad_value)[:, model.table.reshape(-1)]
        return model.act(F.conv2d(p, model.h2_w, stride=2, groups=12) + model.h2_b)

    base = h2_from(h1)
    seen = np.zeros((12, 12), dtype=np.int64)
    for i in range(12):
        h = h1.clone()
        h[:, i] += 0.5
        seen[:, i] = (h2_from(h) - base).abs().amax(dim=(0, 2, 3)).gt(0).numpy()
    assert (seen == table_mask(connection_table(table))).all()


def test_tables_are_balanced_where_claimed():
    for name in ("karpathy", "balanced"):
        mask = table_mask(connection_table(name))
        assert mask.sum(1).tolist() == [8] * 12  # each H2 map sees 8 H1 maps (NC89)
        assert mask.sum(0).tolist() == [8] * 12  # each H1 map feeds 8 H2 maps
    assert not (table_mask(connection_table("karpathy"))
                == table_mask(connection_table("balanced"))).all()


@pytest.mark.parametrize("bad", [[[0]] * 11, [[0, 1], [2]] + [[0, 1]] * 10, [[0, 0]] * 12,
                                 [[0, 12]] * 12, "blocks"])
def test_bad_tables_are_refused(bad):
    with pytest.raises(ConfigError):
        connection_table(bad)


@pytest.mark.parametrize("reading", ["2.4/F", "2.4/sqrt(F)"])
def test_init_is_uniform_within_the_papers_bound(reading):
    cfg = ModelConfig(init=reading)
    params = init_params(cfg, seed=0)
    for name, shape in layer_shapes(cfg).items():
        p = params[name]
        assert p.shape == shape and p.dtype == np.float64
        if name.endswith("_w"):
            f = fan_in(shape)
            bound = 2.4 / f if reading == "2.4/F" else 2.4 / np.sqrt(f)
            assert np.abs(p).max() <= bound
            assert np.abs(p).max() > 0.9 * bound  # fills the range
            assert abs(p.mean()) < 0.2 * bound
        else:
            assert not p.any()  # zeros (the guess)


def test_init_depends_on_the_seed_only():
    a, b, c = (init_params(ModelConfig(), s) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["h1_w"], c["h1_w"])
    m32 = Net1989(ModelConfig(dtype="float32"), seed=0)
    assert m32.h1_w.dtype == torch.float32
    np.testing.assert_allclose(m32.h1_w.detach().numpy(), a["h1_w"], rtol=1e-6)


def _torch_init(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """The initial weights as they were drawn before init_params did without torch (and as
    karpathy/lecun1989-repro draws them): torch.rand from torch.Generator().manual_seed."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for layer in ("h1", "h2", "h3", "out"):
        w_shape, b_shape = layer_shapes(cfg)[f"{layer}_w"], layer_shapes(cfg)[f"{layer}_b"]
        f = fan_in(w_shape)
        r = 2.4 / f if cfg.init == "2.4/F" else 2.4 / np.sqrt(f)
        w = (torch.rand(w_shape, generator=gen, dtype=torch.float64) * 2 - 1) * r
        b = (torch.rand(b_shape, generator=gen, dtype=torch.float64) * 2 - 1) * r
        if cfg.bias_init == "zeros":
            b = torch.zeros(b_shape, dtype=torch.float64)
        out[f"{layer}_w"], out[f"{layer}_b"] = w.numpy(), b.numpy()
    if cfg.output_bias_init is not None:
        out["out_b"][:] = cfg.output_bias_init
    return out


@pytest.mark.parametrize("name", ["paper", "karpathy", "notebook", "modern-relu-dropout"])
def test_init_draws_torchs_generator_stream_bit_for_bit(name):
    """init_params reproduces torch's CPU generator without torch (seeds up to 2**32 - 1,
    every layer's weights and biases drawn in turn): equal bit for bit to torch.rand."""
    cfg = preset(name).model
    for seed in (0, 1, 7, 12345, 2**31 - 1, 2**31, 2**32 - 1):
        mine, torchs = init_params(cfg, seed), _torch_init(cfg, seed)
        assert list(mine) == list(torchs)
        for key in mine:
            assert mine[key].shape == torchs[key].shape and mine[key].dtype == np.float64
            assert np.array_equal(mine[key], torchs[key]), (name, seed, key)


def test_training_on_the_compiled_engines_imports_no_torch(fake_usps_dir):
    """What a run on the fast or lanes engine imports (the command line, data, the loop, both
    engines, the run files), the initial weights and the USPS digits need no torch: start-up
    without its ~2 s (the mnist sources resize with torch's interpolate, as the notebook)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import lecun1989.cli.main, lecun1989.train.loop, lecun1989.engines.fast\n"
            "import lecun1989.engines.lanes, lecun1989.analysis.history, lecun1989.data\n"
            "import lecun1989.train.checkpoint\n"
            "from lecun1989.config import preset\n"
            "from lecun1989.model import init_params\n"
            "from lecun1989.data import load\n"
            "init_params(preset('paper').model, 3)\n"
            f"load('usps', data_dir={str(fake_usps_dir)!r})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_activation_is_the_scaled_tanh_and_padding_is_minus_one():
    model = Net1989(ModelConfig(dtype="float64"))
    a = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(model.act(a), 1.7159 * torch.tanh(2 / 3 * a))
    # A blank digit (all background -1) with zero biases: H1 sees only -1 everywhere,
    # so every unit of a map has the same total input, padding included.
    h1 = model.layers(-torch.ones(1, 1, 16, 16))["h1"]
    assert torch.allclose(h1, h1[:, :, :1, :1].expand_as(h1))
    zero_pad = Net1989(ModelConfig(dtype="float64", pad_value=0.0))
    zero_pad.load_numpy_params(model.numpy_params())
    assert not torch.allclose(zero_pad.layers(-torch.ones(1, 1, 16, 16))["h1"], h1)


def test_notebook_geometry():
    model = Net1989(preset("notebook").model)
    out = model.layers(torch.zeros(2, 1, 28, 28))
    assert out["h1"].shape == (2, 12, 14, 14) and out["h2"].shape == (2, 12, 7, 7)
    assert out["out"].shape == (2, 10) and out["out"].dtype == torch.float64


def test_one_field_decides_each_bias_tensor():
    """bias_init reaches every bias, the output's too; output_bias_init, when set, overrides
    the output biases alone (Karpathy's -1)."""
    uniform = ModelConfig(bias_init="uniform")
    params = init_params(uniform, 0)
    shapes = layer_shapes(uniform)
    for layer in ("h1", "h2", "h3", "out"):
        b = params[f"{layer}_b"]
        bound = 2.4 / fan_in(shapes[f"{layer}_w"])
        assert len(np.unique(b)) == b.size > 1 and np.abs(b).max() <= bound, layer
    assert not np.any(init_params(ModelConfig(), 0)["out_b"])  # zeros, the guess
    karpathy = init_params(ModelConfig(bias_init="uniform", output_bias_init=-1.0), 0)
    assert np.all(karpathy["out_b"] == -1) and np.array_equal(karpathy["h3_b"], params["h3_b"])
    assert preset("karpathy").model.output_bias_init == -1.0
