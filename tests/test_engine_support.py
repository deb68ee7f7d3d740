"""Engines declare what they compute (engines/base.py): every config field, and every value of
every field with a fixed set of values, is either refused with one line or computed as the
reference computes it. A value added to the config without engine support fails here."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from importlib import import_module

import numpy as np
import pytest

from lecun1989 import config
from lecun1989 import data as datasets
from lecun1989.config import RunConfig, apply_overrides, preset
from lecun1989.engines import ENGINES, choose_engine, make_engine, why_not
from lecun1989.engines.base import config_fields
from lecun1989.errors import ConfigError
from lecun1989.model import PARAM_NAMES, init_params
from lecun1989.model.tables import TABLES
from lecun1989.train.loop import dropout_keep

STEPS = 30
COMPILED = [name for name in ENGINES if name != "reference"]


def fixed_choices() -> dict[str, tuple]:
    """Every field whose values form a fixed set, with the set: config's choices, the named
    connection tables, the input sizes and every boolean field."""
    out = {f"{section}.{name}" if section else name: tuple(values)
           for (section, name), values in config._CHOICES.items() if name != "engine"}
    out["model.table"] = tuple(TABLES)
    out["model.input_size"] = (16, 28)
    for key, value in config_fields(RunConfig()).items():
        if isinstance(value, bool):
            out[key] = (False, True)
    return out


@pytest.fixture(scope="module")
def digits():
    d = datasets.load("digits")
    return d.train_images[:STEPS], d.train_labels[:STEPS]


def _base(*overrides: str) -> RunConfig:
    return apply_overrides(preset("paper"), ["model.dtype=float64", "train.sdlm_samples=10",
                                             "train.lr=1e-4", *overrides])


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_declares_every_config_field(name):
    module = import_module(ENGINES[name][0])
    declared, known = set(module.SUPPORTS), set(config_fields(RunConfig()))
    assert declared == known, f"undeclared: {known - declared}; unknown: {declared - known}"
    assert {"seed"} <= module.PER_MODEL <= known


def test_a_field_added_to_the_config_is_refused_until_declared(monkeypatch):
    """config_fields sees a new field, and an engine that does not declare it refuses."""
    cfg = _base()
    extended = {**config_fields(cfg), "model.new_option": 1}
    monkeypatch.setattr("lecun1989.engines.base.config_fields", lambda c=None: extended)
    for name in ENGINES:
        assert "model.new_option" in why_not(name, [cfg])


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, values in fixed_choices().items()
                                            for v in values])
@pytest.mark.parametrize("name", COMPILED)
def test_each_choice_is_refused_or_computed_as_the_reference_does(digits, name, key, value):
    option = f"{key}={str(value).lower() if isinstance(value, bool) else value}"
    extra = {"model.dropout": ["train.optimizer=sgd"],
             # the summed loss with mu 10 times the base's: the base's steps (with the base's
             # mu, 10 times larger steps saturate units, and rounding grows past 1e-9)
             "train.loss_reduction": [f"train.sdlm_mu={10 * _base().train.sdlm_mu}"]}
    cfg = _base(option, *extra.get(key, []))
    reason = why_not(name, [cfg])
    if reason is not None:
        assert "\n" not in reason and (key in reason or "does not support" in reason)
        with pytest.raises(ConfigError):
            make_engine(name, [cfg], [init_params(cfg.model, 0)])
        try:  # auto falls back, and says why (or, none left, refuses in one line)
            chosen = choose_engine(cfg)[0]
        except ConfigError as e:
            chosen = None
            assert "\n" not in str(e)
        assert chosen != name
        with pytest.raises(ConfigError, match=f"--engine {name}"):
            choose_engine(apply_overrides(cfg, [f"engine={name}"]))
        return
    x, y = digits
    if cfg.model.input_size != 16:
        pytest.fail(f"{name} claims model.input_size={cfg.model.input_size}")
    params = init_params(cfg.model, 1)
    engines = [make_engine(n, [cfg], [params]) for n in (name, "reference")]
    keep = dropout_keep(cfg, 0, len(y))
    for engine in engines:
        engine.begin_pass(0, x, y)
        engine.train_steps(x, y, 0, STEPS, np.array([cfg.train.lr]),
                           None if keep is None else keep[None])
    got, want = (e.params()[0] for e in engines)
    tol = 1e-9 if cfg.model.dtype == "float64" else 1e-5  # test_fast_engine's tolerances
    for n in PARAM_NAMES:
        scale = np.abs(want[n]).max() or 1.0
        diff = np.abs(got[n].astype(np.float64) - want[n]).max()
        assert diff / scale < tol, f"{option}: {n}"


def test_rules_refuse_combinations():
    cfg = _base("model.dropout=0.2")  # with SDLM, the paper's rule
    assert "dropout" in why_not("fast", [cfg])
    assert why_not("reference", [cfg]) is None


def test_config_fields_lists_every_leaf():
    leaves = [f"{f.name}.{g.name}" if is_dataclass(getattr(RunConfig(), f.name)) else f.name
              for f in fields(RunConfig)
              for g in (fields(getattr(RunConfig(), f.name))
                        if is_dataclass(getattr(RunConfig(), f.name)) else [f])]
    assert list(config_fields(RunConfig())) == leaves
