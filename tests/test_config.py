"""Presets, `--set` overrides and validation."""

import json

import pytest

from lecun1989.config import PRESETS, RunConfig, apply_overrides, preset
from lecun1989.errors import ConfigError


def test_presets_round_trip_through_json():
    for name in PRESETS:
        cfg = preset(name)
        again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg and again.preset == name


def test_presets_hold_their_sources_choices():
    p, k, n = preset("paper"), preset("karpathy"), preset("notebook")
    assert (p.model.tanh_scale, p.model.tanh_slope, p.model.init) == (1.7159, 2 / 3, "2.4/F")
    assert p.train.optimizer == "sdlm" and preset("paper-sgd").train.optimizer == "sgd"
    assert (p.model.bias, p.model.pad_value, p.train.passes) == ("unit", -1.0, 23)
    assert (k.model.tanh_scale, k.model.init, k.model.output_bias_init, k.train.lr) == (
        1.0, "2.4/sqrt(F)", -1.0, 0.03)
    assert (n.model.input_size, n.model.pad_value, n.model.bias, n.model.table) == (
        28, 0.0, "map", "full")
    assert (n.model.tanh_scale, n.train.lr, n.train.passes, n.model.dtype) == (
        1.716, 0.1, 20, "float64")
    assert not any(c.train.shuffle for c in (p, k, n))  # NC89: fixed order


def test_overrides_parse_types_and_bare_keys():
    cfg = apply_overrides(preset("paper"), [
        "lr=0.1", "train.passes=3", "table=full", "model.dtype=float64", "shuffle=true",
        "pad_value=0", "lr_schedule=[[0, 0.5], [2, 0.1]]"])
    assert cfg.train.lr == 0.1 and isinstance(cfg.train.lr, float)
    assert cfg.train.passes == 3 and cfg.model.table == "full" and cfg.train.shuffle is True
    assert cfg.model.pad_value == 0.0 and cfg.train.lr_schedule == [[0, 0.5], [2, 0.1]]
    assert apply_overrides(preset("paper"), ["seed=7"]).seed == 7


@pytest.mark.parametrize("override, words", [
    ("lr=-1", "must be finite and positive"), ("passes=0", "must be finite and positive"),
    ("lr=abc", "expected"),
    ("nope=1", "unknown"), ("model.nope=1", "unknown"), ("optimizer=adam", "not valid"),
    ("table=[[1,2]]", "12 rows"), ("passes=2.5", "expected"), ("lr", "key=value"),
    ("input_size=20", "16 or 28"), ("lr_schedule=[[0]]", "first_pass"),
    ("lr=1e400", "finite"),
])
def test_bad_overrides_are_one_line_config_errors(override, words):
    with pytest.raises(ConfigError) as e:
        apply_overrides(preset("paper"), [override])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_and_config_keys():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("lenet5")
    with pytest.raises(ConfigError, match="unknown"):
        RunConfig.from_dict({"model": {"bogus": 1}})


def test_config_imports_nothing_from_the_rest_of_the_package():
    """config is the bottom layer: lecun1989/model imports it, never the reverse (no cycle)."""
    import ast
    from pathlib import Path

    import lecun1989.config

    tree = ast.parse(Path(lecun1989.config.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert {m for m in imported if m and m.startswith("lecun1989")} == {"lecun1989.errors"}


def test_a_flag_and_a_set_that_disagree_are_refused():
    from lecun1989.config import apply_flags

    def flags(passes=None, seed=None, data=None):
        return {"train.passes": ("--passes", passes), "seed": ("--seed", seed),
                "data.name": ("--data", data)}

    for overrides, given, words in (
            (["train.passes=5"], flags(passes=3), "--passes 3 and --set train.passes=5 disagree"),
            (["seed=2"], flags(seed=1), "--seed 1 and --set seed=2 disagree"),
            (["data.name=usps"], flags(data="digits"), "--data digits and --set data.name=usps"),
            (["passes=abc"], flags(passes=3), "expected a int")):  # a masked value is checked
        with pytest.raises(ConfigError) as e:
            apply_flags(preset("paper"), overrides, given)
        assert words in str(e.value) and "\n" not in str(e.value)
    cfg = apply_flags(preset("paper"), ["passes=3", "lr=0.1"], flags(passes=3, seed=7,
                                                                     data="digits"))
    assert (cfg.train.passes, cfg.seed, cfg.data.name, cfg.train.lr) == (3, 7, "digits", 0.1)
