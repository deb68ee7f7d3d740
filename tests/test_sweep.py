"""Sweeps: value lists, hash-named run folders, the process pool, skipping finished runs,
the table, and submitit's local executor. Tiny runs: 200 digits, one pass."""

import json

import numpy as np
import pytest

from lecun1989.cli.main import main
from lecun1989.config import apply_overrides, preset
from lecun1989.errors import ConfigError, UserError
from lecun1989.sweeps import run_sweep, write_table
from lecun1989.sweeps.grid import (
    config_hash,
    expand_sets,
    ladder_configs,
    plan,
    run_name,
    split_values,
)
from lecun1989.sweeps.run import single_threaded
from lecun1989.sweeps.table import PLOT, TABLE_JSON, TABLE_MD
from lecun1989.train.loop import fit, load_run_data, parse_seeds

TINY = ["data.name=digits", "data.limit_train=200", "data.limit_test=100", "train.passes=1",
        "engine=reference"]


def tiny(name: str, seed: int, *extra: str):
    return apply_overrides(preset(name), [*TINY, f"seed={seed}", *extra])


def quiet(*_):
    pass


def test_value_lists_ranges_and_json_values():
    assert split_values("0.01,0.03, 0.1") == ["0.01", "0.03", "0.1"]
    assert split_values("2-4") == ["2", "3", "4"]
    assert split_values("-1,1e-4") == ["-1", "1e-4"]  # not ranges
    assert split_values("[[0,0.01],[2,0.005]],[]") == ["[[0,0.01],[2,0.005]]", "[]"]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7] and parse_seeds("5") == [5]
    combos = expand_sets(["train.lr=0.01,0.1", "table=karpathy,full,balanced"])
    assert len(combos) == 6 and ["train.lr=0.1", "table=full"] in combos
    assert expand_sets([]) == [[]]
    for bad in (lambda: split_values("3-1"), lambda: split_values("1,,2"),
                lambda: parse_seeds("x"), lambda: expand_sets(["train.lr"])):
        with pytest.raises(ConfigError):
            bad()


def test_same_config_same_folder_different_config_different_folder(tmp_path):
    a, b = tiny("paper", 0), tiny("paper", 0)
    assert run_name(a) == run_name(b) and run_name(a).startswith("paper-")
    others = [tiny("paper", 1), tiny("paper", 0, "train.lr=0.01"), tiny("karpathy", 0)]
    assert len({config_hash(c) for c in [a, *others]}) == 4
    runs = plan([a, b, *others], tmp_path)
    assert [out.name for _, out in runs] == [run_name(c) for c in [a, *others]]  # a, b: one run
    with pytest.raises(ConfigError, match="empty"):
        plan([], tmp_path)


def test_pool_sweep_skips_finished_runs_and_tables_them(tmp_path):
    configs = [tiny(p, s) for p in ("paper", "karpathy") for s in (0, 1)]
    first = run_sweep(configs, tmp_path, workers=2, progress=False, log=quiet)
    assert len(first.ran) == 4 and not first.failed and not first.skipped
    for cfg in configs:
        run_dir = tmp_path / run_name(cfg)
        saved = json.loads((run_dir / "config.json").read_text())
        assert saved["seed"] == cfg.seed and saved["preset"] == cfg.preset
        assert (run_dir / "summary.json").is_file()
    second = run_sweep(configs, tmp_path, workers=2, progress=False, log=quiet)
    assert len(second.ran) == 0 and len(second.skipped) == 4
    (tmp_path / run_name(configs[0]) / "summary.json").unlink()  # as if stopped mid-run
    third = run_sweep(configs, tmp_path, workers=2, progress=False, log=quiet)
    assert third.ran == [tmp_path / run_name(configs[0])] and len(third.skipped) == 3

    table = write_table(tmp_path)
    assert [g["label"] for g in table["groups"]] == ["paper", "karpathy"]
    for group in table["groups"]:
        errors = [json.loads((tmp_path / d / "summary.json").read_text())["final"]["test"]
                  ["error"] for d in group["dirs"]]
        stats = group["stats"]["test"]["error"]
        assert group["seeds"] == [0, 1]
        assert stats["median"] == pytest.approx(np.median(errors))
        assert stats["sd"] == pytest.approx(np.std(errors, ddof=1))
    for name in (TABLE_MD, TABLE_JSON, PLOT):
        assert (tmp_path / name).stat().st_size > 0
    assert "| karpathy |" in (tmp_path / TABLE_MD).read_text()

    # a run is a pure function of its config: in this process, the same numbers as the pool's
    again = run_sweep([configs[3]], tmp_path / "again", progress=False, log=quiet)
    assert again.ran
    final = [json.loads((d / run_name(configs[3]) / "summary.json").read_text())["final"]
             for d in (tmp_path, tmp_path / "again")]
    assert final[0] == final[1]


def test_groups_are_labelled_by_what_varies_within_a_preset(tmp_path):
    configs = [tiny("karpathy", s, f"train.lr={lr}") for lr in (0.1, 0.03) for s in (0, 1)]
    run_sweep(configs, tmp_path, progress=False, log=quiet)
    table = write_table(tmp_path)
    assert [g["label"] for g in table["groups"]] == ["karpathy train.lr=0.03",
                                                     "karpathy train.lr=0.1"]
    assert all(len(g["seeds"]) == 2 for g in table["groups"])


def test_failed_run_is_reported_and_redone(tmp_path, monkeypatch):
    import lecun1989.train.loop as loop

    def diverge(*args, **kwargs):
        raise UserError("training diverged at pass 1; lower the learning rate")

    monkeypatch.setattr(loop, "fit", diverge)
    cfg = tiny("paper", 0)
    result = run_sweep([cfg], tmp_path, progress=False, log=quiet)
    assert list(result.failed.values()) == ["training diverged at pass 1; lower the learning rate"]
    run_dir = tmp_path / run_name(cfg)
    assert "diverged" in (run_dir / "error.txt").read_text()
    assert not (run_dir / "summary.json").exists()
    monkeypatch.undo()
    retry = run_sweep([cfg], tmp_path, progress=False, log=quiet)
    assert retry.ran == [run_dir] and not (run_dir / "error.txt").exists()


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path):
    cfg = tiny("karpathy", 0, "train.passes=2")
    run_dir = tmp_path / run_name(cfg)

    class Stop:
        def on_steps(self, step, pass_index, losses, engine):
            if pass_index == 1:
                raise KeyboardInterrupt  # after pass 1's checkpoint

    with single_threaded(), pytest.raises(KeyboardInterrupt):
        fit(cfg, load_run_data(cfg), run_dir, progress=False, log=quiet, callbacks=[Stop()])
    result = run_sweep([cfg], tmp_path, progress=False, log=quiet)
    assert result.ran == [run_dir]
    assert "resuming" in (run_dir / "log.txt").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    with single_threaded():
        fresh = fit(cfg, load_run_data(cfg), None, progress=False, log=quiet).summary
    assert summary["final"] == fresh["final"] and len(summary["passes"]) == 2


def test_submitit_local_executor_runs_two(tmp_path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(timeout_min=10, cpus_per_task=1)
    configs = [tiny("karpathy", s) for s in (0, 1)]
    result = run_sweep(configs, tmp_path, executor=executor, progress=False, log=quiet,
                       poll_s=0.5)
    assert not result.failed and sorted(result.ran) == sorted(tmp_path / run_name(c)
                                                              for c in configs)
    assert all((d / "summary.json").is_file() for d in result.ran)


def test_ladder_configs_scale_passes_and_keep_the_order():
    configs = ladder_configs([0, 1], passes_fraction=0.1, overrides=["data.name=digits"])
    assert [c.preset for c in configs[::2]] == ["karpathy", "modern-softmax", "modern-adamw",
                                                "modern-augment", "modern-relu-dropout"]
    assert [c.train.passes for c in configs[::2]] == [2, 2, 5, 6, 8]
    assert {c.seed for c in configs} == {0, 1} and configs[0].data.name == "digits"
    with pytest.raises(ConfigError):
        ladder_configs([0], passes_fraction=0)


def test_cli_dry_run_lists_the_grid_and_bad_lists_exit_2(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "--preset", "paper", "karpathy", "--seeds", "0-2", "--data", "digits",
            "--set", "train.lr=0.01,0.03", "--out", str(out), "--dry-run"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and len(set(lines)) == 12 and not out.exists()
    assert main(["sweep", "--set", "train.lr=0.1,,0.2", "--out", str(out)]) == 2
    assert main(["sweep", "--preset", "nope", "--out", str(out)]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_compatible_runs_train_side_by_side_with_the_numbers_each_gets_alone(tmp_path):
    """Fresh runs that one engine can hold (here: seeds and step sizes, on the engine each
    gets alone) train as one batch; every run's folder holds what `fit` of its config alone
    writes: the same metrics, the same checkpoint bytes."""
    configs = [apply_overrides(preset("paper-sgd"), [*TINY[:-1], f"seed={s}", f"train.lr={lr}"])
               for s in (0, 1) for lr in (0.03, 0.05)]
    said = []
    result = run_sweep(configs, tmp_path / "sweep", progress=False, log=said.append)
    assert len(result.ran) == 4 and not result.failed
    assert any("4 runs in 1 batch" in line for line in said), said
    for cfg in configs:
        alone = fit(cfg, load_run_data(cfg), tmp_path / "alone" / run_name(cfg), progress=False,
                    log=quiet)
        folder = tmp_path / "sweep" / run_name(cfg)
        batch = json.loads((folder / "summary.json").read_text())
        assert batch["final"] == alone.summary["final"] and batch["engine"] == "fast"
        assert (folder / "model.safetensors").read_bytes() == \
            (alone.out / "model.safetensors").read_bytes()
