"""The fidelity study's machinery (studies/fidelity.py): every guess is ablated or says why,
the constant search climbs past an edge that wins, runs batch only when a lanes engine can
hold them together, and the share-of-seeds interval is Wilson's."""

import sys
from pathlib import Path

import numpy as np
import pytest

from lecun1989.config import GUESSES, apply_overrides, preset
from lecun1989.engines import lanes

sys.path.insert(0, str(Path(__file__).parents[1] / "studies"))
import fidelity  # noqa: E402


def test_every_guess_is_ablated_or_says_why_not():
    arms = fidelity.guess_arms({"paper-sgd": ["train.optimizer=sgd", "train.lr=0.02"]})
    assert {key for key, _ in arms} | set(fidelity.NOT_ABLATED) == set(GUESSES)
    names = [s.name for _, s in arms]  # a name is a folder: unique, and says the change
    assert len(set(names)) == len(names)
    assert all(all(o.split("=")[0].split(".")[-1].split("_")[-1] in s.name for o in s.overrides)
               for _, s in arms)
    assert "lr=0.02" in names[[k for k, _ in arms].index("train.optimizer")]
    base = fidelity._config(fidelity.Setting("paper", "paper"), 0, True, "d")
    for key, setting in arms:  # each arm is valid and changes what it names
        cfg = fidelity._config(setting, 0, True, "d")
        section, name = key.split(".")
        changed = [f"{s}.{n}" for s in ("model", "train") for n in vars(getattr(cfg, s))
                   if getattr(getattr(cfg, s), n) != getattr(getattr(base, s), n)]
        assert changed and (key in changed or key == "train.sdlm_decay"), (key, changed)
        assert lanes.SUPPORTS and fidelity._together(cfg)  # (the lanes engine's to train)


def test_the_search_extends_one_rung_past_a_winning_edge():
    ladder = (1, 2, 3, 4, 5)
    rng = [1, 3]
    assert fidelity._grow(rng, 1, ladder) and rng == [0, 3]  # the low edge won
    assert not fidelity._grow(rng, 0, ladder) and rng == [0, 3]  # the ladder's end
    assert fidelity._grow(rng, 3, ladder) and rng == [0, 4]
    assert not fidelity._grow(rng, 2, ladder)  # inside: done


def test_runs_batch_together_only_where_the_lanes_hold_what_differs():
    def cfg(*o):
        return fidelity._config(fidelity.Setting("x", "paper", o), 0, True, "d")

    key = fidelity._together
    assert key(cfg("train.lr=1e-4", "seed=3")) == key(cfg("train.sdlm_mu=0.2", "target=0.8"))
    assert key(cfg()) != key(cfg("model.table=full"))
    assert key(cfg()) != key(cfg("train.sdlm_samples=100"))
    assert key(cfg()) != key(apply_overrides(cfg(), ["data.validation=0"]))


@pytest.mark.parametrize(("k", "n"), [(0, 20), (1, 20), (9, 20), (20, 20), (3, 7)])
def test_the_share_interval_is_wilsons(k, n):
    """Oracle: Wilson's bounds are the p where |k/n - p| = z sqrt(p (1 - p) / n)."""
    z, lo, hi = 1.959964, *fidelity.wilson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    for p in (lo, hi):
        if 0 < p < 1:
            assert abs(k / n - p) == pytest.approx(z * np.sqrt(p * (1 - p) / n), rel=1e-9)
    assert (lo == 0) == (k == 0) and (hi == 1) == (k == n)


def test_the_selection_rule_prefers_the_median_then_the_mse():
    def row(errors, mses):
        from lecun1989.stats import summarize
        return {"stats": {"validation": {"error": summarize(errors), "mse": summarize(mses)}}}

    a, b, c = row([0.02, 0.03, 0.021], [1, 1, 1]), row([0.021, 0.02, 0.05], [0.5] * 3), \
        row([0.019, 0.05, 0.05], [0.1] * 3)
    assert min([a, b, c], key=fidelity._score) is b  # medians 0.021, 0.021, 0.05: MSE breaks


def test_the_headline_refuses_a_preset_that_is_not_the_validated_choice(tmp_path, monkeypatch,
                                                                          capsys):
    import json

    monkeypatch.setattr(fidelity, "RESULTS", tmp_path)
    p = preset("paper").train
    chosen = {"paper": ["train.optimizer=sdlm", f"train.sdlm_mu={p.sdlm_mu}",
                        f"train.lr={p.lr}"], "paper-sgd": ["train.optimizer=sgd",
                                                          f"train.lr={preset('paper-sgd').train.lr}"]}
    (tmp_path / "select.json").write_text(json.dumps({"chosen": chosen}))
    assert fidelity._chosen("headline") == chosen
    chosen["paper"][1] = f"train.sdlm_mu={p.sdlm_mu * 10}"
    (tmp_path / "select.json").write_text(json.dumps({"chosen": chosen}))
    with pytest.raises(SystemExit) as stop:
        fidelity._chosen("headline")
    assert stop.value.code == 2 and "train.sdlm_mu" in capsys.readouterr().err
