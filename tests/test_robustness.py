"""Bad input, everywhere: every command refuses it in one line, exit 2, no traceback, no half-
written output, and no checkpoint ever runs code.

Each entry of CASES is a command line built around one broken input; `test_bad_input` runs it
through the CLI in-process and checks: exit status 2, exactly one stderr line
`lecun1989: error: ...` holding the expected words, no traceback, no output folder `out`
left behind, the finished run beside it untouched and no pickle executed. To add a case,
add one Case line here and one row to the table in docs/robustness.md (a test holds the two
together).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import gzip
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lecun1989 import files
from lecun1989.cli.main import build_parser, main
from lecun1989.config import _field_index, preset
from lecun1989.data.files import MAX_BYTES
from lecun1989.data.usps import EXPECTED
from lecun1989.model.net import init_params
from lecun1989.train import checkpoint, rundir
from lecun1989.train.loop import fit, load_run_data

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "robustness.md"
OUT = "out"  # every case writes (or would write) here, under its own temporary folder
MARKER = "PWNED"  # what the malicious pickles would create
ROW = "1 " + " ".join(["-1"] * 256) + "\n"  # one valid ESL line: label 1, blank pixels
pytestmark = pytest.mark.usefixtures("data_env")
USPS_TRAIN_COUNTS = EXPECTED["train"][1]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[SimpleNamespace], list[str]]  # builds the bad input, returns the command
    expect: str  # words the one-line message must hold


# --- builders of bad inputs (c.tmp: a fresh folder; c.run: a finished run to leave alone) ---

def train(c, *args: str) -> list[str]:
    return ["train", "--data", "digits", "--out", str(c.tmp / OUT), "--quiet", *args]


def usps(c, train_file: bytes | None, name: str = "zip.train") -> list[str]:
    """`train --data usps --data-dir D` with D/name holding train_file (None: a folder)."""
    d = c.tmp / "usps"
    d.mkdir()
    if train_file is None:
        (d / name).mkdir()
    else:
        (d / name).write_bytes(train_file)
    (d / "zip.test").write_text(ROW)
    return ["train", "--data", "usps", "--data-dir", str(d), "--out", str(c.tmp / OUT)]


def esl(label: str = "1", pixels: list[str] | None = None) -> bytes:
    return (" ".join([label, *(pixels or ["-1"] * 256)]) + "\n").encode()


def file(c, name: str, content: bytes | str) -> Path:
    path = c.tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


class Evil:
    """Unpickling this creates MARKER: a pickle that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_pickle(c, name: str) -> Path:
    return file(c, name, pickle.dumps(Evil(c.tmp / MARKER)))


def evil_torch_save(c, name: str) -> Path:
    torch.save({"h1_w": Evil(c.tmp / MARKER)}, c.tmp / name)
    return c.tmp / name


def evil_run_dir(c) -> Path:
    d = c.tmp / "evil-run"
    d.mkdir()
    (d / rundir.CHECKPOINT).write_bytes(pickle.dumps(Evil(c.tmp / MARKER)))
    return d


def saved(c, name: str, cfg=None, params=None, **edits) -> Path:
    """A checkpoint written by checkpoint.save (no training state), params edited."""
    if cfg is None:
        cfg = preset("paper")
        cfg.data.name = "digits"
    params = params or init_params(cfg.model, 0)
    params = {**params, **edits}
    return checkpoint.save(c.tmp / name, cfg, params)


def truncated(c) -> Path:
    good = saved(c, "good.safetensors").read_bytes()
    return file(c, "truncated.safetensors", good[:len(good) // 2])


def incompatible(c) -> Path:
    """A config with the 'full' H1->H2 table (12 of 12) holding weights for 8 of 12."""
    cfg = preset("paper")
    cfg.model.table = "full"
    return saved(c, "incompatible.safetensors", cfg, init_params(preset("paper").model, 0))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind
                                                                                   + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def resumable_dir_without_state(c) -> Path:
    d = c.tmp / "old-run"
    d.mkdir()
    saved(c, f"old-run/{rundir.CHECKPOINT}")
    return d


def damaged_copy(c, name: str, content: str) -> Path:
    d = c.tmp / "damaged"
    shutil.copytree(c.run, d)
    (d / name).write_text(content)
    return d


def unfinished_copy(c) -> Path:
    """The finished run without its summary.json: as if stopped before the end."""
    d = c.tmp / "unfinished"
    shutil.copytree(c.run, d)
    (d / rundir.SUMMARY).unlink()
    return d


def fifo(c) -> list[str]:
    """`zip.train` is a named pipe: reading it would block for ever."""
    d = c.tmp / "usps"
    d.mkdir()
    os.mkfifo(d / "zip.train")
    (d / "zip.test").write_text(ROW)
    return ["train", "--data", "usps", "--data-dir", str(d), "--out", str(c.tmp / OUT)]


def dev_zero_link(c) -> list[str]:
    """`zip.train` is a link to /dev/zero: it never ends."""
    d = c.tmp / "usps"
    d.mkdir()
    (d / "zip.train").symlink_to("/dev/zero")
    (d / "zip.test").write_text(ROW)
    return ["train", "--data", "usps", "--data-dir", str(d), "--out", str(c.tmp / OUT)]


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip file of 1 MiB more zeros than data/files.MAX_BYTES (about 260 KB packed)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    chunk = bytes(2**20)
    parts = [packer.compress(chunk) for _ in range((MAX_BYTES >> 20) + 1)]
    return b"".join(parts) + packer.flush()


def huge_file(c) -> list[str]:
    """`zip.train` of MAX_BYTES + 1 (a sparse file: no disk used)."""
    argv = usps(c, b"")
    with open(c.tmp / "usps" / "zip.train", "r+b") as f:
        f.truncate(MAX_BYTES + 1)
    return argv


def blank_usps(c) -> list[str]:
    """The right number of digits with the right labels, every image blank (-1)."""
    labels = np.repeat(np.arange(10), USPS_TRAIN_COUNTS)
    blank = " " + " ".join(["-1"] * 256) + "\n"
    return usps(c, "".join(f"{y}{blank}" for y in labels).encode())


CASES = [
    # data files, through `train --data usps --data-dir DIR`
    Case("data-empty-file", lambda c: usps(c, b""), "empty file (0 bytes)"),
    Case("data-truncated-gzip", lambda c: usps(c, gzip.compress(ROW.encode() * 50)[:60],
                                               "zip.train.gz"), "truncated gzip"),
    Case("data-binary-garbage", lambda c: usps(c, bytes(range(256)) * 8), "binary data"),
    Case("data-wrong-column-count", lambda c: usps(c, esl(pixels=["-1"] * 100)),
         "101 numbers, expected 257"),
    Case("data-not-a-number", lambda c: usps(c, esl(pixels=["abc"] + ["-1"] * 255)),
         "'abc' is not a number"),
    Case("data-label-10", lambda c: usps(c, esl("10")), "label 10 is not a digit"),
    Case("data-label-minus-1", lambda c: usps(c, esl("-1")), "label -1 is not a digit"),
    Case("data-label-3.5", lambda c: usps(c, esl("3.5")), "label 3.5 is not a digit"),
    Case("data-nan-pixel", lambda c: usps(c, esl(pixels=["nan"] + ["-1"] * 255)),
         "pixel 1 is nan"),
    Case("data-huge-pixel", lambda c: usps(c, esl(pixels=["-1", "1e9"] + ["-1"] * 254)),
         "pixel 2 is 1e+09"),
    Case("data-too-few-rows", lambda c: usps(c, esl() * 10), "10 digits, expected 7291"),
    Case("data-folder-instead-of-file", lambda c: usps(c, None), "is a folder"),
    Case("data-dir-missing", lambda c: ["train", "--data", "usps", "--data-dir",
                                        str(c.tmp / "nowhere"), "--out", str(c.tmp / OUT)],
         "no such folder"),
    Case("data-dir-is-a-file", lambda c: ["train", "--data", "usps", "--data-dir",
                                          str(file(c, "f", "x")), "--out", str(c.tmp / OUT)],
         "is not a folder"),
    Case("data-test-file-missing", lambda c: ["train", "--data", "usps", "--data-dir",
                                              str(file(c, "zip.train", ROW).parent),
                                              "--out", str(c.tmp / OUT)], "no zip.test"),
    Case("data-unknown-source", lambda c: train(c, "--data", "nope"), "unknown data source"),
    Case("data-unknown-source-close", lambda c: train(c, "--data", "mnist5k"),
         "did you mean mnist-5k?"),
    Case("data-fifo", fifo, "is a FIFO (named pipe), not a regular file"),
    Case("data-link-to-dev-zero", dev_zero_link, "is a character device, not a regular file"),
    Case("data-gzip-bomb", lambda c: usps(c, gzip_bomb(), "zip.train.gz"),
         "gzip data that unpacks to more than 256 MiB"),
    Case("data-huge-file", huge_file, "more than 256 MiB"),
    Case("data-all-images-blank", blank_usps, "every digit is blank"),
    Case("data-dir-missing-digits", lambda c: train(c, "--data-dir", str(c.tmp / "nowhere")),
         "no such folder"),
    Case("data-dir-missing-mnist-5k", lambda c: ["train", "--data", "mnist-5k", "--data-dir",
                                                 str(c.tmp / "nowhere"), "--out",
                                                 str(c.tmp / OUT)], "no such folder"),
    Case("data-notebook-on-usps", lambda c: ["train", "--preset", "notebook", "--data", "usps",
                                             "--out", str(c.tmp / OUT)],
         "use --set model.input_size=16"),
    Case("data-validation-too-large", lambda c: train(c, "--set", "data.validation=99999"),
         "must be below"),
    # configuration
    Case("config-unknown-preset", lambda c: train(c, "--preset", "nope"), "unknown preset"),
    Case("config-unknown-key", lambda c: train(c, "--set", "nope=1"), "unknown key"),
    Case("config-unknown-section-key", lambda c: train(c, "--set", "train.nope=1"),
         "unknown key"),
    Case("config-wrong-type", lambda c: train(c, "--set", "lr=abc"), "expected a float"),
    Case("config-wrong-type-int", lambda c: train(c, "--set", "passes=2.5"), "expected a int"),
    Case("config-flag-not-a-number", lambda c: train(c, "--passes", "x"), "invalid int value"),
    Case("config-set-without-equals", lambda c: train(c, "--set", "lr"), "key=value"),
    Case("config-negative-lr", lambda c: train(c, "--set", "lr=-1"), "must be finite and positive"),
    Case("config-zero-lr", lambda c: train(c, "--set", "lr=0"), "must be finite and positive"),
    Case("config-nan-lr", lambda c: train(c, "--set", "lr=NaN"), "train.lr"),
    Case("config-zero-passes", lambda c: train(c, "--passes", "0"), "must be finite and positive"),
    Case("config-negative-passes", lambda c: train(c, "--passes", "-3"),
         "must be finite and positive"),
    Case("config-table-wrong-shape", lambda c: train(c, "--set", "table=[[0,1],[2]]"),
         "must have 12 rows"),
    Case("config-table-ragged", lambda c: train(c, "--set", f"table={[[0, 1]] * 11 + [[2]]}"),
         "of one length"),
    Case("config-table-bad-map", lambda c: train(c, "--set", f"table={[[0, 12]] * 12}"),
         "integers 0..11"),
    Case("config-table-unknown-name", lambda c: train(c, "--set", "table=nope"),
         "model.table='nope' is not valid"),
    Case("config-lr-schedule-malformed", lambda c: train(c, "--set", "lr_schedule=[5]"),
         "lr_schedule item 5"),
    Case("config-unknown-engine", lambda c: train(c, "--engine", "warp"), "invalid choice"),
    Case("config-dropout-one", lambda c: train(c, "--set", "dropout=1"), "must be below 1"),
    Case("config-sdlm-decay-above-one", lambda c: train(c, "--set", "sdlm_decay=1.5"),
         "must be at most 1"),
    Case("config-sdlm-estimate-unknown", lambda c: train(c, "--set", "sdlm_estimate=runing"),
         "did you mean running?"),
    Case("config-summed-cross-entropy",
         lambda c: train(c, "--set", "loss=cross_entropy", "--set", "loss_reduction=sum"),
         "applies to the MSE loss only"),
    Case("config-unknown-command", lambda c: ["fly"], "invalid choice"),
    Case("flag-and-set-passes-disagree",
         lambda c: train(c, "--passes", "3", "--set", "train.passes=5"), "disagree"),
    Case("flag-and-set-seed-disagree", lambda c: train(c, "--seed", "1", "--set", "seed=2"),
         "disagree"),
    Case("flag-and-set-data-disagree",
         lambda c: train(c, "--data", "digits", "--set", "data.name=usps"), "disagree"),
    Case("seeds-and-seed", lambda c: train(c, "--seeds", "0-2", "--seed", "1"),
         "give only --seeds"),
    Case("seeds-backwards", lambda c: train(c, "--seeds", "4-0"), "runs backwards"),
    Case("config-key-two-dots", lambda c: train(c, "--set", "model.nope.deep=1"),
         "a key is NAME or SECTION.NAME"),
    Case("config-key-empty-part", lambda c: train(c, "--set", "model..table=full"),
         "a key is NAME or SECTION.NAME"),
    Case("config-key-did-you-mean", lambda c: train(c, "--set", "train.lrr=0.1"),
         "unknown key (did you mean train.lr?); list them with `lecun1989 config`"),
    Case("config-value-did-you-mean", lambda c: train(c, "--set", "optimizer=sdml"),
         "is not valid (did you mean sdlm?)"),
    Case("config-seed-2-64-flag", lambda c: train(c, "--seed", str(2**64)),
         "seed=18446744073709551616 must be an integer from 0 to 4294967295"),
    Case("config-seed-2-64-set", lambda c: train(c, "--set", f"seed={2**64}"),
         "must be an integer from 0 to 4294967295"),
    Case("config-seed-negative", lambda c: train(c, "--seed", "-1"),
         "must be an integer from 0 to 4294967295"),
    Case("config-augment-shift-17", lambda c: train(c, "--set", "augment_shift=17"),
         "train.augment_shift=17 must be below half the input size"),
    Case("config-command-unknown-key", lambda c: ["config", "--set", "tabel=full"],
         "did you mean table?"),
    Case("config-command-unknown-preset", lambda c: ["config", "--preset", "papr"],
         "unknown preset 'papr' (did you mean paper?)"),
    # checkpoints, through `evaluate` (and `predict`)
    Case("checkpoint-missing", lambda c: ["evaluate", str(c.tmp / "nothing.safetensors")],
         "no such checkpoint"),
    Case("checkpoint-folder-without-one", lambda c: ["evaluate", str(c.tmp)],
         "no such checkpoint"),
    Case("checkpoint-empty-file", lambda c: ["evaluate", str(file(c, "e.safetensors", b""))],
         "an empty file"),
    Case("checkpoint-not-a-checkpoint", lambda c: ["evaluate", str(file(c, "t.safetensors",
                                                                        "hello\n"))],
         "not a safetensors file"),
    Case("checkpoint-truncated", lambda c: ["evaluate", str(truncated(c))],
         "not a safetensors file, or a truncated one"),
    Case("checkpoint-other-safetensors", lambda c: ["evaluate", str(file(
        c, "other.safetensors", _plain_safetensors()))], "not a lecun1989 checkpoint"),
    Case("checkpoint-incompatible-config", lambda c: ["evaluate", str(incompatible(c))],
         "parameter h2_w is missing or has the wrong shape"),
    Case("checkpoint-nan-weights", lambda c: ["evaluate", str(saved(
        c, "nan.safetensors", out_b=np.full(10, np.nan)))], "non-finite"),
    Case("checkpoint-28x28-on-usps", lambda c: ["evaluate", str(saved(
        c, "n.safetensors", preset("notebook"))), "--data", "usps"], "geometry 28"),
    Case("checkpoint-pickle-as-safetensors", lambda c: ["evaluate", str(evil_run_dir(c))],
         "a pickle"),
    Case("checkpoint-pickle-pt", lambda c: ["evaluate", str(evil_pickle(c, "evil.pt"))],
         "a pickle"),
    Case("checkpoint-torch-save-pt", lambda c: ["evaluate", str(evil_torch_save(c, "e.pt"))],
         "never loads"),
    Case("predict-pickle-checkpoint", lambda c: ["predict", str(evil_run_dir(c)),
                                                 str(file(c, "x.png", png_header(16, 16)))],
         "a pickle"),
    # resume
    Case("resume-no-checkpoint", lambda c: ["train", "--resume", str(c.tmp)],
         "no model.safetensors in it"),
    Case("resume-with-config-flags", lambda c: ["train", "--resume", str(c.run), "--set",
                                                "lr=0.1", "--passes", "3"],
         "leave out --set, --passes"),
    Case("resume-finished-run", lambda c: ["reproduce", "--resume", str(c.run)],
         "already finished"),
    Case("resume-checkpoint-without-state",
         lambda c: ["train", "--resume", str(resumable_dir_without_state(c))], "not resumable"),
    Case("resume-pickle", lambda c: ["train", "--resume", str(evil_run_dir(c))], "a pickle"),
    # output folder
    Case("out-holds-another-run", lambda c: ["train", "--data", "digits", "--out", str(c.run)],
         "not empty"),
    Case("out-holds-an-unfinished-run", lambda c: ["train", "--data", "digits", "--out",
                                                   str(unfinished_copy(c))],
         "holds an unfinished run; continue it with --resume"),
    Case("out-is-a-file", lambda c: ["train", "--data", "digits", "--out", str(file(c, OUT,
                                                                                    "x"))],
         "not a folder"),
    Case("out-under-a-file", lambda c: ["train", "--data", "digits", "--out",
                                        str(file(c, "f", "x") / OUT)], "cannot write there"),
    Case("out-name-too-long", lambda c: ["train", "--data", "digits", "--out",
                                         str(c.tmp / OUT / ("x" * 300))],
         "is longer than the file system allows"),
    # images, through `predict`
    Case("predict-not-an-image", lambda c: ["predict", str(c.run), str(file(c, "t.png",
                                                                            "hello"))],
         "not a readable picture"),
    Case("predict-zero-bytes", lambda c: ["predict", str(c.run), str(file(c, "z.png", b""))],
         "empty"),
    Case("predict-huge-dimensions", lambda c: ["predict", str(c.run), str(file(
        c, "huge.png", png_header(100_000, 100_000)))], "decompression bomb"),
    Case("predict-large-dimensions", lambda c: ["predict", str(c.run), str(file(
        c, "large.png", png_header(9000, 9000)))], "too large"),
    Case("predict-missing-image", lambda c: ["predict", str(c.run), str(c.tmp / "no.png")],
         "no such file"),
    # the demo page, and folders of several seeds
    Case("demo-not-a-run-folder", lambda c: ["demo", str(c.tmp), "--out", str(c.tmp / "d.html")],
         "model.safetensors"),
    Case("demo-out-is-a-folder", lambda c: ["demo", str(c.run), "--out", str(c.tmp)],
         "is a folder"),
    Case("demo-seed-of-one-run", lambda c: ["demo", str(c.run), "--seed", "3", "--out",
                                            str(c.tmp / "d.html")], "leave out --seed"),
    Case("evaluate-damaged-seeds-json",
         lambda c: ["evaluate", str(file(c, "seeds.json", "{").parent)], "seeds.json: unreadable"),
    Case("report-same-run-twice", lambda c: ["report", str(c.run), str(c.run), "--out",
                                             str(c.tmp / OUT)], "named twice"),
    # run folders read by plot and report
    Case("plot-not-a-run-folder", lambda c: ["plot", str(c.tmp), "--out", str(c.tmp / OUT)],
         "no config.json"),
    Case("plot-damaged-config", lambda c: ["plot", str(damaged_copy(c, rundir.CONFIG, "{")),
                                           "--out", str(c.tmp / OUT)], "not valid JSON"),
    Case("report-not-a-run-folder", lambda c: ["report", str(c.tmp / "nowhere"), "--out",
                                               str(c.tmp / OUT)], "no config.json"),
    Case("report-damaged-summary", lambda c: [
        "report", str(damaged_copy(c, rundir.SUMMARY, "[1,")), "--out", str(c.tmp / OUT)],
        "summary.json"),
    # sweeps
    Case("sweep-unknown-preset", lambda c: ["sweep", "--preset", "nope", "--out",
                                            str(c.tmp / OUT)], "unknown preset"),
    Case("sweep-bad-seeds", lambda c: ["sweep", "--seeds", "x", "--out", str(c.tmp / OUT)],
         "is not a seed"),
    Case("sweep-zero-workers", lambda c: ["sweep", "--workers", "0", "--data", "digits",
                                          "--out", str(c.tmp / OUT)], "--workers 0"),
    Case("sweep-no-such-table", lambda c: ["sweep", "--table", str(c.tmp / OUT)],
         "no such sweep folder"),
]


def _plain_safetensors() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros(3, dtype=np.float32)})


def _case(case) -> Case:
    """The Case of a CASES entry (a Case, or a pytest.param wrapping one)."""
    return case.values[0] if hasattr(case, "values") else case


def _id(case) -> str:
    return _case(case).id


def assert_refused(rc: int, err: str, expect: str) -> None:
    """Exit status 2 and exactly one stderr line, `lecun1989: error: ...` with `expect`."""
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("lecun1989: error: "), err
    assert expect in lines[0], lines[0]
    assert "Traceback" not in err


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A small finished run (1 pass on 30 digits) that the cases must leave untouched."""
    cfg = preset("paper")
    for k, v in (("name", "digits"), ("limit_train", 30), ("limit_test", 20)):
        setattr(cfg.data, k, v)
    cfg.train.passes, cfg.engine = 1, "reference"
    out = tmp_path_factory.mktemp("finished") / "run"
    fit(cfg, load_run_data(cfg), out, progress=False, log=lambda *_: None)
    return out


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_bad_input(case: Case, finished_run, tmp_path, capsys):
    c = SimpleNamespace(tmp=tmp_path, run=finished_run)
    before = files_of(finished_run)
    rc, _, err = cli(case.argv(c), capsys)
    assert_refused(rc, err, case.expect)
    assert not (tmp_path / OUT).is_dir()  # no run folder, not even an empty one
    assert not (tmp_path / MARKER).exists()  # no pickle ran
    assert files_of(finished_run) == before


def test_every_command_has_bad_input_cases(finished_run, tmp_path):
    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.choices and a.dest == "command").choices)
    covered = {"info"}  # test_any_override_is_taken_or_refused_in_one_line
    for i, case in enumerate(CASES):
        c = SimpleNamespace(tmp=tmp_path / str(i), run=finished_run)
        c.tmp.mkdir()
        covered.add(_case(case).argv(c)[0])
    missing = commands - covered
    assert not missing, f"no bad-input case for {sorted(missing)}: add some to CASES"


# --- the output folder: another run at once, a stale lock, --overwrite ---------------------

def test_a_second_run_on_a_busy_folder_is_refused(tmp_path, capsys):
    out = tmp_path / OUT
    out.mkdir()
    fd = os.open(out / rundir.LOCK, os.O_RDWR | os.O_CREAT)  # another process's lock
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        rc, _, err = cli(["train", "--data", "digits", "--out", str(out), "--overwrite"],
                         capsys)
    finally:
        os.close(fd)
    assert_refused(rc, err, "another lecun1989 run (pid 4242) is writing to it")
    assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK]  # nothing written


def test_a_stale_lock_and_overwrite_let_a_run_proceed(finished_run, tmp_path, capsys):
    out = tmp_path / OUT
    shutil.copytree(finished_run, out)
    (out / rundir.LOCK).write_text("999999999\n")  # left by a process long dead
    rc, stdout, err = cli(["train", "--data", "digits", "--passes", "1", "--quiet",
                           "--engine", "reference",
                           "--set", "data.limit_train=20", "--set", "data.limit_test=10",
                           "--out", str(out), "--overwrite"], capsys)
    assert rc == 0, err
    assert json.loads((out / rundir.SUMMARY).read_text())["data"]["train"] == 20
    assert not (out / rundir.LOCK).exists()


# --- a full disk: one line, nothing half-written, a folder that can be resumed or rerun ------

def _disk_full_at(monkeypatch, fails) -> list[Path]:
    """Make the fsync of an atomic write's temporary file fail with ENOSPC (where a full disk
    shows with delayed allocation) when fails(target path) holds; returns the refused paths."""
    refused, real = [], os.fsync

    def fsync(fd):
        tmp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if files.is_temporary(tmp.name):  # .NAME.PID.N.tmp
            target = tmp.parent / tmp.name[1:].rsplit(".", 3)[0]
            if fails(target):
                refused.append(target)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return refused


RUN = ["train", "--data", "digits", "--passes", "2", "--engine", "reference", "--quiet",
       "--set", "data.limit_train=20", "--set", "data.limit_test=10"]


def test_a_full_disk_before_the_first_checkpoint_leaves_no_folder(monkeypatch, tmp_path, capsys):
    refused = _disk_full_at(monkeypatch, lambda path: True)
    out = tmp_path / "new" / OUT
    rc, _, err = cli([*RUN, "--out", str(out)], capsys)
    assert_refused(rc, err, f"the disk is full writing {out / rundir.CONFIG}; free space and run "
                            "the command again")
    assert refused == [out / rundir.CONFIG]
    assert not (tmp_path / "new").exists()  # nor the parent it created


def test_a_full_disk_after_a_checkpoint_says_resume_and_the_resume_finishes(
        monkeypatch, tmp_path, capsys):
    out = tmp_path / OUT
    refused = _disk_full_at(monkeypatch, lambda path: path.name == rundir.CHECKPOINT
                            and path.is_file())  # the checkpoint after pass 1
    rc, _, err = cli([*RUN, "--out", str(out)], capsys)
    assert_refused(rc, err, f"the disk is full writing {out / rundir.CHECKPOINT}; free space and "
                            f"resume with `lecun1989 train --resume {out}`")
    assert len(refused) == 1
    assert not [p.name for p in out.iterdir() if files.is_temporary(p.name)]  # no temporary
    assert checkpoint.load_state(out)[2].passes_done == 0  # the previous checkpoint, whole
    monkeypatch.undo()
    rc, _, err = cli(["train", "--resume", str(out), "--quiet"], capsys)
    assert rc == 0, err
    assert json.loads((out / rundir.SUMMARY).read_text())["final"]["train"]["n"] == 20


# --- no read or write permission: a subprocess without root's permission override ----------

def _without_dac_override():
    """In the child: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (root reads anything)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_data_and_unwritable_out_are_refused(finished_run):
    """Also `plot` and `report` of a finished run in a folder this user cannot write to."""
    root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp())
    try:
        data = tmp / "usps"
        data.mkdir()
        (data / "zip.train").write_text(ROW)
        (data / "zip.test").write_text(ROW)
        (data / "zip.train").chmod(0)
        locked = tmp / "read-only"
        locked.mkdir()
        shutil.copytree(finished_run, locked / "run")
        (locked / "run").chmod(0o555)
        locked.chmod(0o555)
        runs = {
            "no permission to read it": ["train", "--data", "usps", "--data-dir", str(data),
                                         "--out", str(tmp / OUT)],
            "cannot write there": ["train", "--data", "digits", "--out", str(locked / OUT)],
            "cannot write to": ["plot", str(locked / "run")],
            "(permission); choose another folder": ["report", str(locked / "run")],
        }
        env = {**os.environ, "OMP_NUM_THREADS": "1", "LECUN1989_CACHE": str(tmp / "cache")}
        script = ("import json, sys; from lecun1989.cli.main import main; "
                  "print(json.dumps([main(argv) for argv in json.loads(sys.argv[1])]))")
        try:  # both commands in one interpreter: one import of torch
            done = subprocess.run([sys.executable, "-c", script, json.dumps(list(runs.values()))],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                                  preexec_fn=_without_dac_override if root else None)
        except subprocess.TimeoutExpired:
            raise
        except subprocess.SubprocessError as e:  # the preexec_fn failed
            pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here ({e})")
        codes, errors = json.loads(done.stdout.splitlines()[-1]), done.stderr.splitlines()
        assert len(errors) == len(runs), done.stderr
        for rc, err, expect in zip(codes, errors, runs, strict=True):
            assert_refused(rc, err, expect)
        assert not (tmp / OUT).exists() and not (locked / OUT).exists()
        assert sorted(p.name for p in (locked / "run").iterdir()) == sorted(
            p.name for p in Path(finished_run).iterdir())  # nothing written, nothing lost
    finally:
        (tmp / "read-only").chmod(0o755)
        if (tmp / "read-only" / "run").exists():
            (tmp / "read-only" / "run").chmod(0o755)
        shutil.rmtree(tmp)


# --- property-based: whatever the bytes, one line and exit 2 ------------------------------

FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(content=st.one_of(st.binary(max_size=3000),
                         st.lists(st.sampled_from(["-1", "1", "0.5", "nan", "1e9", "x", "10",
                                                   "-0", "3.5", " ", "\t"]), max_size=600)
                         .map(lambda xs: " ".join(xs).encode())),
       gz=st.booleans())
def test_any_data_file_is_refused_in_one_line(content, gz, tmp_path, capsys):
    d = tmp_path / "usps"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / ("zip.train.gz" if gz else "zip.train")).write_bytes(gzip.compress(content) if gz
                                                              else content)
    (d / "zip.test").write_text(ROW)
    rc, _, err = cli(["train", "--data", "usps", "--data-dir", str(d), "--out",
                      str(tmp_path / OUT)], capsys)
    assert_refused(rc, err, str(d / "zip.train"))
    assert not (tmp_path / OUT).exists()


KEYS = sorted({path for paths in _field_index().values() for path in paths})


@FUZZ
@given(key=st.sampled_from(KEYS + ["nope", "train.nope", "model"]),
       value=st.one_of(st.text(max_size=12), st.sampled_from(
           ["-1", "0", "1e400", "NaN", "[]", "[[1]]", "null", "true", "{}", "1.5", "\"x\""])))
def test_any_override_is_taken_or_refused_in_one_line(key, value, capsys):
    rc, out, err = cli(["info", "--json", "--set", f"{key}={value}"], capsys)
    if rc == 0:
        assert set(json.loads(out)) >= {"units", "parameters"} and not err
    else:
        assert_refused(rc, err, "")


@FUZZ
@given(data=st.data())
def test_any_damaged_checkpoint_is_refused_or_still_valid(data, finished_run, tmp_path,
                                                           capsys):
    good = (finished_run / rundir.CHECKPOINT).read_bytes()
    header_end = 8 + struct.unpack("<Q", good[:8])[0]
    if data.draw(st.booleans(), label="truncate"):
        bad = good[:data.draw(st.integers(0, len(good) - 1), label="length")]
    else:  # overwrite bytes in the length field and the JSON header
        bad = bytearray(good)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            bad[data.draw(st.integers(0, header_end - 1))] = data.draw(st.integers(0, 255))
        bad = bytes(bad)
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(bad)
    rc, out, err = cli(["evaluate", str(path), "--json"], capsys)
    if rc == 0:  # the damage hit something harmless (e.g. a digit of the seed)
        assert set(json.loads(out)) == {"data", "train", "test"}
    else:
        assert_refused(rc, err, "")


# --- loading safety: nothing in the package unpickles -------------------------------------

def test_no_loader_in_the_package_can_unpickle():
    unsafe = re.compile(r"torch\.load\((?![^)]*weights_only=True)|pickle\.loads?\(|"
                        r"allow_pickle=True|joblib\.load\(|dill\.load")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in sorted((ROOT / "lecun1989").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if unsafe.search(line)]
    assert not hits, "loaders that can run code:\n" + "\n".join(hits)


# --- the docs count every case ------------------------------------------------------------

def test_docs_list_every_case():
    text = DOCS.read_text()
    assert set(re.findall(r"`test_bad_input\[([^\]]+)\]`", text)) == {_id(c) for c in CASES}
    sources = "".join((ROOT / "tests" / f).read_text()
                      for f in ("test_robustness.py", "test_resume.py", "test_cli.py",
                                "test_files.py", "test_config.py", "test_history.py",
                                "test_train.py", "test_documented_commands.py",
                                "test_predict.py"))
    for name in set(re.findall(r"`(test_\w+)", text)):
        assert f"def {name}(" in sources, f"docs/robustness.md names {name}: no such test"
    rows = re.findall(r"^\| (?!Input|-)", text, flags=re.M)
    assert f"{len(rows)} cases" in text, f"docs/robustness.md: say '{len(rows)} cases'"


def test_a_full_disk_at_one_seeds_end_of_pass_lets_the_others_end_it_and_resume_finishes(
        monkeypatch, tmp_path, capsys):
    """Several seeds end their passes side by side (train.loop._each_model): one seed's full
    disk is one line; the other seeds still write that pass's checkpoint; no temporary file
    is left anywhere; `--resume` then finishes every seed."""
    out = tmp_path / OUT
    seed_1 = out / "seed-1" / rundir.CHECKPOINT
    refused = _disk_full_at(monkeypatch, lambda path: path == seed_1 and path.is_file())
    rc, _, err = cli([*RUN, "--seeds", "0-2", "--out", str(out)], capsys)
    assert_refused(rc, err, f"the disk is full writing {seed_1}; free space and resume with "
                            f"`lecun1989 train --resume {out}`")
    assert refused == [seed_1]
    assert not [p for p in out.rglob("*") if files.is_temporary(p.name)]
    assert [checkpoint.load_state(out / f"seed-{s}")[2].passes_done for s in (0, 1, 2)] == \
        [1, 0, 1]
    monkeypatch.undo()
    rc, _, err = cli(["train", "--resume", str(out), "--quiet"], capsys)
    assert rc == 0, err
    for s in (0, 1, 2):
        assert json.loads((out / f"seed-{s}" / rundir.SUMMARY).read_text())["passes"][-1][
            "pass"] == 2
