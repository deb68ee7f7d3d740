"""The command line end to end on the bundled `digits`: reproduce, evaluate, info, -m."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lecun1989 import paper
from lecun1989.cli.main import main
from lecun1989.train import checkpoint, rundir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """`lecun1989 reproduce --data digits --passes 2` (on 300 digits): (folder, stdout)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(["reproduce", "--data", "digits", "--passes", "2", "--engine", "reference",
                       "--set", "data.limit_train=300", "--out", str(out), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, stderr.getvalue()
    return out, stdout.getvalue()


def test_reproduce_prints_the_paper_table_and_writes_the_run_folder(reproduced):
    out, stdout = reproduced
    assert "paper (USPS)" in stdout and "this run (digits)" in stdout
    ref = paper.RESULTS["test"]
    assert f"{ref['error']:.2%} ({ref['misses']})" in stdout  # the paper's column
    for row in ("train error", "train MSE", "test error", "test MSE", "reject for 1% test error"):
        assert row in stdout
    assert {rundir.CONFIG, rundir.METRICS, rundir.SUMMARY, rundir.CHECKPOINT} <= {
        p.name for p in out.iterdir()}
    assert not (out / rundir.LOCK).exists()
    summary = json.loads((out / rundir.SUMMARY).read_text())
    assert [p["pass"] for p in summary["passes"]] == [1, 2]
    assert summary["data"] == {"name": "digits", "train": 300, "test": 388}
    assert len((out / rundir.METRICS).read_text().splitlines()) == 2
    assert f"{summary['final']['test']['error']:.2%} ({summary['final']['test']['misses']})" \
        in stdout
    cfg, _, state = checkpoint.load_state(out)  # the final checkpoint is a resumable one too
    assert cfg.train.passes == 2 and (state.passes_done, state.sample) == (2, 0)


def test_evaluate_gives_the_summary_final_numbers(reproduced, capsys):
    out, _ = reproduced
    assert main(["evaluate", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    final = json.loads((out / rundir.SUMMARY).read_text())["final"]
    for split in ("train", "test"):
        assert got[split]["n"] == final[split]["n"]
        assert got[split]["misses"] == final[split]["misses"]
        assert got[split]["error"] == final[split]["error"]
        assert got[split]["mse"] == pytest.approx(final[split]["mse"], rel=1e-6)
        assert got[split]["reject_for_1pct"] == pytest.approx(final[split]["reject_for_1pct"],
                                                              abs=1e-9)


def test_info_json_counts_match_the_paper(capsys):
    assert main(["info", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"units": paper.UNITS, "connections": paper.CONNECTIONS,
                      "parameters": paper.PARAMETERS, "macs": 63660}
    assert (paper.UNITS, paper.CONNECTIONS, paper.PARAMETERS) == (1256, 64660, 9760)


def test_python_dash_m_runs_the_cli():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lecun1989", "info", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parameters"] == 9760


def test_reproduce_with_several_seeds_aggregates_runs_equal_to_single_ones(tmp_path, capsys):
    common = ["--data", "digits", "--passes", "1", "--set", "data.limit_train=150",
              "--set", "data.limit_test=60", "--quiet"]
    assert main(["reproduce", *common, "--seeds", "0-2", "--out", str(tmp_path / "many")]) == 0
    assert "median [min, max] of 3 seeds" in capsys.readouterr().out
    many = json.loads((tmp_path / "many" / rundir.SUMMARY).read_text())
    errors = sorted(r["final"]["test"]["error"] for r in many["runs"])
    assert [r["seed"] for r in many["runs"]] == [0, 1, 2]
    assert many["aggregate"]["test"]["error"]["median"] == errors[1]
    assert many["aggregate"]["test"]["error"]["min"] == errors[0]
    assert all(0 <= r["final"]["test"]["reject_for_1pct"] <= 1 for r in many["runs"])
    assert main(["train", *common, "--seed", "1", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / rundir.SUMMARY).read_text())
    assert one["final"] == many["runs"][1]["final"]  # seed 1 of 3 is a single seed-1 run
    assert main(["reproduce", *common, "--seeds", "2-1", "--out", str(tmp_path / "x")]) == 2
