"""Interrupt and resume: a run stopped by a real signal ends bit-identical to one never stopped.

In-process runs raise SIGINT at an exact step (mid-pass) or pass end (boundary) through a
callback; one CLI run in a subprocess gets a real SIGTERM from outside.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lecun1989.config import apply_overrides, preset
from lecun1989.errors import CheckpointError, UserError
from lecun1989.train import checkpoint, rundir
from lecun1989.train.loop import RunInterrupted, fit, load_run_data

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, CHUNK, PASSES = 90, 30, 3
CONFIGS = {  # preset, overrides: the update rules and the RNG a resume must restore
    "sgd": ("paper", ["optimizer=sgd", "lr=0.03"]),
    "sdlm": ("paper", ["optimizer=sdlm", "lr=5e-4", "sdlm_samples=50"]),
    "adamw-dropout-shift": ("modern-relu-dropout", ["shuffle=true"]),
}
RESUMES = [  # (config, where the signal comes, engine)
    ("sdlm", "mid-pass", "reference"), ("sdlm", "pass boundary", "reference"),
    ("adamw-dropout-shift", "mid-pass", "reference"),
    ("sgd", "mid-pass", "fast"), ("sgd", "pass boundary", "fast"),
    ("sdlm", "mid-pass", "fast"), ("sdlm", "pass boundary", "fast"),
    ("adamw-dropout-shift", "mid-pass", "fast"),
]


def _skip_reason(name: str, engine: str) -> str | None:
    """Why this engine cannot train this config (the fast engine supports a subset)."""
    if engine != "fast":
        return None
    from lecun1989.engines import why_not

    return why_not("fast", [config(name, "reference")])


pytestmark = pytest.mark.usefixtures("one_thread")


def config(name: str, engine: str):
    name_, overrides = CONFIGS[name]
    return apply_overrides(preset(name_), [*overrides, "data.name=digits", f"passes={PASSES}",
                                           f"data.limit_train={N_TRAIN}", "data.limit_test=50",
                                           f"loss_every={CHUNK}", f"engine={engine}"])


@functools.cache
def _data():
    return load_run_data(config("sdlm", "reference"))


class SignalAt:
    """A callback that sends this process a real signal after a step or at a pass end."""

    def __init__(self, signum=signal.SIGINT, step=None, after_pass=None, times=1):
        self.signum, self.step, self.after_pass, self.times = signum, step, after_pass, times

    def on_steps(self, step, pass_index, losses, engine):
        if step == self.step:
            for _ in range(self.times):
                signal.raise_signal(self.signum)

    def on_pass(self, pass_index, metrics, engine):
        if pass_index + 1 == self.after_pass:
            signal.raise_signal(self.signum)


def quiet(*_):
    pass


def without_seconds(obj):
    """A summary with every timing removed (the only thing that may differ)."""
    if isinstance(obj, dict):
        return {k: without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [without_seconds(v) for v in obj]
    return obj


@functools.cache
def _uninterrupted(name: str, engine: str, root: str):
    out = Path(root) / f"whole-{name}-{engine}"
    run = fit(config(name, engine), _data(), out, overwrite=True, progress=False, log=quiet)
    return out, run.loss_history


def uninterrupted(name, engine, tmp_path_factory):
    return _uninterrupted(name, engine, str(tmp_path_factory.getbasetemp()))


def assert_same_run(a: Path, b: Path, passes: int = PASSES) -> None:
    """summary.json (timings aside), metrics and model.safetensors bit for bit."""
    sa, sb = (json.loads((d / rundir.SUMMARY).read_text()) for d in (a, b))
    assert without_seconds(sa) == without_seconds(sb)
    ma, mb = ([without_seconds(json.loads(x)) for x in (d / rundir.METRICS).read_text()
               .splitlines()] for d in (a, b))
    assert ma == mb and len(ma) == passes
    assert (a / rundir.CHECKPOINT).read_bytes() == (b / rundir.CHECKPOINT).read_bytes()


needs_main_thread = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                       reason="signal handlers need the main thread")


@needs_main_thread
@pytest.mark.parametrize("name, where, engine", RESUMES)
def test_interrupted_then_resumed_equals_uninterrupted(name, where, engine, tmp_path,
                                                       tmp_path_factory):
    reason = _skip_reason(name, engine)
    if reason:
        pytest.skip(reason)
    whole, whole_history = uninterrupted(name, engine, tmp_path_factory)
    cfg, out = config(name, engine), tmp_path / "run"
    stop = (SignalAt(after_pass=1) if where == "pass boundary" else
            SignalAt(step=N_TRAIN + 2 * CHUNK))  # pass 2, after its second chunk
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as info:
        fit(cfg, _data(), out, progress=False, log=quiet, callbacks=[stop])
    assert info.value.signum == signal.SIGINT and "resumable checkpoint" in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))  # it crosses process pools intact
    assert (type(copy), copy.signum, str(copy)) == (RunInterrupted, signal.SIGINT,
                                                    str(info.value))
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert not (out / rundir.LOCK).exists() and not (out / rundir.SUMMARY).exists()
    _, _, state = checkpoint.load_state(out)
    expected = (1, 0) if where == "pass boundary" else (1, 2 * CHUNK)
    assert (state.passes_done, state.sample) == expected
    assert len((out / rundir.METRICS).read_text().splitlines()) == 1
    if name == "sdlm" and where == "mid-pass":  # SDLM's h of pass 2 travels in the checkpoint
        assert set(state.optimizer) >= {"h1_w", "out_b"}
    if where == "pass boundary":  # as if killed after pass 2's metrics line, mid-line 3
        lines = (whole / rundir.METRICS).read_text().splitlines()
        (out / rundir.METRICS).write_text("\n".join(lines[:2]) + '\n{"pass": 3, "tr')
    run = fit(cfg, _data(), out, resume=True, progress=False, log=quiet)
    assert run.loss_history == whole_history
    assert_same_run(whole, out)


@needs_main_thread
def test_second_signal_aborts_at_once_and_keeps_the_last_checkpoint(tmp_path):
    cfg, out = config("sdlm", "reference"), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as info:
        fit(cfg, _data(), out, progress=False, log=quiet,
            callbacks=[SignalAt(step=N_TRAIN + CHUNK, times=2)])
    assert not isinstance(info.value, RunInterrupted)
    assert checkpoint.load_state(out)[2].passes_done == 1  # the pass-1 checkpoint survives
    assert not (out / rundir.LOCK).exists()


def test_resume_refuses_other_config_other_data_and_a_finished_run(tmp_path, tmp_path_factory):
    whole, _ = uninterrupted("sdlm", "reference", tmp_path_factory)
    with pytest.raises(UserError, match="already finished"):
        fit(config("sdlm", "reference"), _data(), whole, resume=True, progress=False, log=quiet)
    other = apply_overrides(config("sdlm", "reference"), ["lr=1e-3"])
    with pytest.raises(CheckpointError, match=r"another config \(train\.lr: 0\.0005"):
        fit(other, _data(), whole, resume=True, progress=False, log=quiet)
    data = _data()
    shifted = type(data)(data.name, data.train_images[1:], data.train_labels[1:],
                         data.test_images, data.test_labels)
    with pytest.raises(CheckpointError, match="data differ"):
        fit(config("sdlm", "reference"), shifted, whole, resume=True, progress=False, log=quiet)


@pytest.mark.parametrize("lr_schedule, passes_kept", [("[]", 0), ("[[1, 1e300]]", 1)])
def test_divergence_names_pass_and_step_and_keeps_the_last_good_checkpoint(
        tmp_path, lr_schedule, passes_kept):
    cfg = apply_overrides(config("sdlm", "reference"),
                          ["optimizer=sgd", "lr=1e300" if passes_kept == 0 else "lr=0.01",
                           f"lr_schedule={lr_schedule}"])
    with pytest.raises(UserError) as info:
        fit(cfg, _data(), tmp_path / "run", progress=False, log=quiet)
    message = str(info.value)
    assert f"diverged at pass {passes_kept + 1}, step {passes_kept * N_TRAIN + CHUNK}" in message
    assert "lower the learning rate" in message and "\n" not in message
    _, params, state = checkpoint.load_state(tmp_path / "run")
    assert state.passes_done == passes_kept and state.sample == 0
    assert all(np.isfinite(v).all() for v in params.values())
    assert not (tmp_path / "run" / rundir.SUMMARY).exists()


# --- the real thing: the CLI in a subprocess, a real SIGTERM from outside -----------------------

# Long enough that training is still going when the test reacts to its progress marker: after
# pass 1 is saved, CLI_PASSES - 1 passes remain (seconds of work), whatever the machine's speed.
CLI_PASSES, CLI_TRAIN, CLI_CHUNK = 20, 50, 10
CLI_ARGS = ["train", "--data", "digits", "--passes", str(CLI_PASSES), "--engine", "reference",
            "--quiet", "--set", f"data.limit_train={CLI_TRAIN}", "--set", "data.limit_test=30",
            "--set", f"loss_every={CLI_CHUNK}"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CI": "1"}


def lecun1989(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lecun1989", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _passes_saved(out: Path) -> int:
    """The progress marker: passes whose metrics line and checkpoint are both written."""
    try:
        return min((out / rundir.METRICS).read_text().count("\n"), checkpoint.load(out)[3]["pass"])
    except (OSError, CheckpointError):
        return 0


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    """Poll until condition() holds; fail if the process ends first (no sleep races it)."""
    deadline = time.monotonic() + 300
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after 300 s"
        time.sleep(0.01)


@pytest.mark.slow
def test_cli_run_stopped_by_sigterm_or_killed_resumes_bit_identical(tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = lecun1989(*CLI_ARGS, "--out", str(cut))
    _wait_for(lambda: _passes_saved(cut) >= 1, proc, "pass 1 saved")  # the progress marker
    proc.send_signal(signal.SIGTERM)  # CLI_PASSES - 1 passes still to go: it lands in training
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("lecun1989: stopped by SIGTERM at ")
    assert err.strip().endswith(f"resume with: lecun1989 train --resume {cut}")
    _, _, state = checkpoint.load_state(cut)
    assert 1 <= state.passes_done < CLI_PASSES
    assert state.sample % CLI_CHUNK == 0 and state.sample < CLI_TRAIN
    assert not (cut / rundir.SUMMARY).exists() and not (cut / rundir.LOCK).exists()
    resumed = lecun1989("train", "--resume", str(cut), "--quiet")
    stopped_at = state.passes_done
    _wait_for(lambda: _passes_saved(cut) > stopped_at, resumed, "a pass saved after resuming")
    resumed.kill()  # SIGKILL, wherever it is: nothing to clean up
    assert resumed.wait(timeout=300) == -signal.SIGKILL
    assert checkpoint.load_state(cut)[2].passes_done > stopped_at  # the last one is complete
    resumed = lecun1989("train", "--resume", str(cut), "--quiet")  # despite its stale .lock
    from lecun1989.cli.main import main

    assert main([*CLI_ARGS, "--out", str(whole)]) == 0  # the same run, never stopped
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert_same_run(whole, cut, CLI_PASSES)
    for name in ("loss.jsonl", "params.jsonl"):  # the history recorder's files, if any
        if (whole / name).exists():
            assert (whole / name).read_bytes() == (cut / name).read_bytes(), name


@needs_main_thread
@pytest.mark.parametrize("engine", ["reference", "fast", "lanes"])
def test_several_seeds_interrupted_then_resumed_equal_uninterrupted(engine, tmp_path):
    """A K-model folder: SIGINT mid-pass checkpoints every seed; the resume of the folder
    ends with each seed's files as an uninterrupted K-model run writes them, bit for bit."""
    reason = _skip_reason("sdlm", engine) if engine == "fast" else None
    if reason:
        pytest.skip(reason)
    cfg = config("sdlm", engine)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    runs = fit(cfg, _data(), whole, seeds=[3, 1], progress=False, log=quiet)
    assert [r.summary["seed"] for r in runs] == [3, 1]
    with pytest.raises(RunInterrupted):
        fit(cfg, _data(), parts, seeds=[3, 1], progress=False, log=quiet,
            callbacks=lambda c, o: [SignalAt(step=N_TRAIN + CHUNK)] if c.seed == 3 else [])
    assert not (parts / rundir.SUMMARY).exists()
    for seed in (3, 1):
        assert checkpoint.load_state(parts / f"seed-{seed}")[2].sample == CHUNK
    resumed = fit(cfg, _data(), parts, resume=True, progress=False, log=quiet)
    assert [r.summary["seed"] for r in resumed] == [3, 1]
    for seed in (3, 1):
        assert_same_run(whole / f"seed-{seed}", parts / f"seed-{seed}")
    a, b = (json.loads((d / rundir.SUMMARY).read_text()) for d in (whole, parts))
    assert without_seconds(a) == without_seconds(b) and a["seeds"] == [3, 1]


def test_identical_runs_write_identical_checkpoints(tmp_path):
    """Nothing but the seed decides a checkpoint's bytes (no unseeded generator state)."""
    engine = "fast" if _skip_reason("sdlm", "fast") is None else "reference"
    cfg = apply_overrides(config("adamw-dropout-shift", engine), ["passes=1"])
    for name in ("a", "b"):
        fit(cfg, _data(), tmp_path / name, progress=False, log=quiet)
    assert (tmp_path / "a" / rundir.CHECKPOINT).read_bytes() == \
        (tmp_path / "b" / rundir.CHECKPOINT).read_bytes()


@needs_main_thread
def test_resume_rewrites_an_edited_or_lost_config_and_refuses_another_runs_checkpoint(
        tmp_path):
    cfg = config("sdlm", "reference")
    for name in ("a", "b"):
        with pytest.raises(RunInterrupted):
            fit(apply_overrides(config("sdlm", "reference"), [f"seed={len(name) + ord(name)}"]),
                _data(), tmp_path / name, progress=False, log=quiet,
                callbacks=[SignalAt(after_pass=1)])
    a, b = tmp_path / "a", tmp_path / "b"
    (b / rundir.CHECKPOINT).write_bytes((a / rundir.CHECKPOINT).read_bytes())  # copied in
    with pytest.raises(CheckpointError, match="another run"):
        fit(checkpoint.load(b)[0], _data(), b, resume=True, progress=False, log=quiet)
    saved = json.loads((a / rundir.CONFIG).read_text())
    (a / rundir.CONFIG).write_text(json.dumps({**saved, "seed": 999}))  # edited by hand
    fit(checkpoint.load(a)[0], _data(), a, resume=True, progress=False, log=quiet)
    assert json.loads((a / rundir.CONFIG).read_text())["seed"] == saved["seed"]
    assert cfg.seed == 0
