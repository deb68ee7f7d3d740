"""The command line end to end on the bundled `digits`: reproduce, evaluate, info, -m."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lecun1989 import paper
from lecun1989.cli.main import build_parser, main
from lecun1989.config import apply_overrides, preset
from lecun1989.train import checkpoint, rundir
from lecun1989.train.loop import load_run_data

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


# --- signals from the first line to the last --------------------------------------------------

def _caught(pid: int) -> int:
    """The mask of signals a process has handlers for (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return 0


def _importing_torch(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libtorch" in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("moment", ["handlers installed", "torch loading"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_command_imports_gives_one_line_and_128_plus_signum(
        signum, moment, tmp_path):
    """SIGINT/SIGTERM as soon as main has its handlers (Python's own catch SIGINT only, so the
    SIGTERM bit of SigCgt marks main's), or once torch's library is being loaded."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lecun1989", "train", "--data", "digits",
                             "--quiet", "--out", str(out)], cwd=ROOT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready = ((lambda: _caught(proc.pid) >> (signal.SIGTERM - 1) & 1) if moment ==
                 "handlers installed" else (lambda: _importing_torch(proc.pid)))
        while not ready():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.001)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert err == "lecun1989: interrupted\n"  # one line, no traceback
    assert not out.exists()  # the run had not begun: nothing written


def test_importing_the_command_line_imports_neither_torch_nor_numpy():
    """Nor does building the parser (every command's module): --help and a wrong flag
    answer at once."""
    code = ("import sys, lecun1989; from lecun1989.cli.main import build_parser; "
            "build_parser(); print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.strip() == "[]", done.stderr
    import lecun1989

    assert lecun1989.preset("paper").train.passes == 23  # the lazy names still work
    assert set(lecun1989.__all__) <= set(dir(lecun1989))


# --- --help: every option explained, with its default ------------------------------------------

@pytest.mark.parametrize("command", [None, "reproduce", "train", "info", "evaluate", "config",
                                     "sweep", "plot", "report", "predict", "demo"])
def test_help_explains_every_option_and_its_default(command):
    parser = build_parser()
    if command:
        sub = next(a for a in parser._actions if a.dest == "command").choices
        parser = sub[command]
    text = parser.format_help()
    for action in parser._actions:
        if action.dest in ("help", "command"):
            continue
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"
        if action.option_strings:  # an option: its default is shown
            helped = parser._get_formatter()._get_help_string(action)
            assert "(default" in helped, f"{command} {action.option_strings}: no default"
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert text.count("(default") >= len(options)  # as printed


# --- `lecun1989 config` -------------------------------------------------------------------------

def test_config_lists_every_key_with_its_value_type_allowed_values_and_meaning(capsys):
    from lecun1989.config import _field_index, apply_overrides, preset

    assert main(["config", "--preset", "notebook", "--set", "lr=0.5", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    keys = {path for paths in _field_index().values() for path in paths}
    assert set(rows) == keys
    cfg = apply_overrides(preset("notebook"), ["lr=0.5"])
    for key, row in rows.items():
        section, _, name = key.rpartition(".")
        assert row["value"] == getattr(getattr(cfg, section) if section else cfg, name), key
        assert row["meaning"] and row["type"] and row["allowed"], key
    assert rows["train.lr"]["value"] == 0.5 and rows["model.input_size"]["value"] == 28
    assert rows["train.optimizer"]["allowed"] == "sgd, sdlm or adamw"
    assert rows["seed"]["allowed"] == "an integer 0..4294967295"
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert 'train.lr = 0.0004  (float; > 0)' in text and "SDLM" in text


def test_a_folder_of_seeds_is_first_class(tmp_path, capsys):
    """reproduce --seeds writes seed-<s>/ folders; evaluate, report, plot and predict take the
    folder: every seed, and the spread or the vote."""
    from PIL import Image

    folder = tmp_path / "seeds"
    common = ["--data", "digits", "--passes", "1", "--set", "data.limit_train=200",
              "--set", "data.limit_test=50", "--quiet"]
    assert main(["reproduce", *common, "--seeds", "2,5", "--out", str(folder)]) == 0
    capsys.readouterr()
    summaries = {s: json.loads((folder / f"seed-{s}" / rundir.SUMMARY).read_text())
                 for s in (2, 5)}
    assert main(["evaluate", str(folder), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for s, summary in summaries.items():
        assert evaluated["seeds"][str(s)]["test"]["misses"] == summary["final"]["test"]["misses"]
    errors = sorted(s["final"]["test"]["error"] for s in summaries.values())
    assert evaluated["aggregate"]["test"]["error"]["min"] == errors[0]
    assert main(["report", str(folder)]) == 0
    md = (folder / "report.md").read_text()
    assert "seed-2" in md and "seed-5" in md and (folder / "plots" / "overlay.png").is_file()
    assert main(["plot", str(folder)]) == 0
    for s in (2, 5):
        assert (folder / f"seed-{s}" / "plots" / "loss.png").is_file()
    picture = tmp_path / "digit.png"
    digit = load_run_data(apply_overrides(preset("paper"), ["data.name=digits"])).test_images[0, 0]
    Image.fromarray(np.round((1 - digit) / 2 * 255).astype(np.uint8)).resize((64, 64)).save(
        picture)
    capsys.readouterr()
    assert main(["predict", str(folder), str(picture)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["seed 2", "seed 5"]
    assert lines[-1].startswith(f"{picture}: ") and "of 2 seeds" in lines[-1]
