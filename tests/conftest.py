"""Shared pytest fixtures."""

from __future__ import annotations

import bz2
import gzip
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# ---- data layer (lecun1989.data) -------------------------------------------------------------

DATA_ENV_VARS = ("LECUN1989_DATA", "LECUN1989_CACHE", "LECUN1989_USPS_URL", "LECUN1989_OPENML_URL")
_USER_DATA_DIR = os.environ.get("LECUN1989_DATA", "").strip()
SHARED_USPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "usps"
USPS_COUNTS = {
    "train": (1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644),
    "test": (359, 264, 198, 166, 200, 160, 170, 147, 166, 177),
}
_FAKE_VALUES = np.array([-1.0, -0.5, 0.0, 0.25, 1.0])
_LONG = np.array(["-1.0000", "-0.5000", "0.0000", "0.2500", "1.0000"])
_SHORT = np.array(["-1", "-.5", "0", "0.25", "1"])


@pytest.fixture
def data_env(monkeypatch, tmp_path) -> Path:
    """Isolate lecun1989.data: no LECUN1989_* variables, and a fresh empty cache (returned)."""
    for var in DATA_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LECUN1989_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def real_usps_dir() -> Path:
    """The folder with the real zip.train.gz and zip.test.gz; skips the test when absent."""
    candidates = [Path(_USER_DATA_DIR), Path(_USER_DATA_DIR) / "usps"] if _USER_DATA_DIR else []
    for folder in [*candidates, SHARED_USPS]:
        if (folder / "zip.train.gz").is_file() and (folder / "zip.test.gz").is_file():
            return folder
    pytest.skip("the real USPS files are absent (set LECUN1989_DATA or add ../shared/data/usps)")


@pytest.fixture(scope="session")
def real_usps_dir_or_none() -> Path | None:
    """The folder with the real USPS files, or None when absent."""
    candidates = [Path(_USER_DATA_DIR), Path(_USER_DATA_DIR) / "usps"] if _USER_DATA_DIR else []
    for folder in [*candidates, SHARED_USPS]:
        if (folder / "zip.train.gz").is_file() and (folder / "zip.test.gz").is_file():
            return folder
    return None


def esl_text(labels, codes, *, short: bool = False) -> bytes:
    """ESL text: a label then 256 pixels a line; pixel codes index the fake values."""
    table = _SHORT if short else _LONG
    tail = " \n" if short else "\n"
    label_fmt = "{:d}" if short else "{:d}.0000"
    rows = table[codes].tolist()
    return "".join(label_fmt.format(int(y)) + " " + " ".join(r) + tail
                   for y, r in zip(labels, rows, strict=True)).encode()


def libsvm_text(labels, codes) -> bytes:
    """LIBSVM text: label+1 then index:value for the non-zero pixels only."""
    items = np.array([[f"{j + 1}:{v}" for v in _SHORT] for j in range(256)])
    columns = np.arange(256)
    lines = []
    for y, row in zip(labels, codes, strict=True):
        keep = _FAKE_VALUES[row] != 0
        lines.append(" ".join([str(int(y) + 1), *items[columns[keep], row[keep]].tolist()]))
    return ("\n".join(lines) + "\n").encode()


def relabel_first(esl: bytes) -> bytes:
    """The same ESL text with the first digit's label moved up by one (class counts go wrong)."""
    return str((int(esl[:1]) + 1) % 10).encode() + esl[1:]


@pytest.fixture(scope="session")
def usps_text():
    """Fake-file writers: esl(labels, codes, short=False), libsvm(labels, codes), relabel_first."""
    return SimpleNamespace(esl=esl_text, libsvm=libsvm_text, relabel_first=relabel_first,
                           values=_FAKE_VALUES)


@pytest.fixture(scope="session")
def fake_usps():
    """A full-size fake USPS set (the real row and class counts): arrays and file bytes."""
    rng = np.random.default_rng(1989)
    out = {}
    for split, counts in USPS_COUNTS.items():
        labels = rng.permutation(np.repeat(np.arange(10), counts))
        codes = rng.choice(len(_FAKE_VALUES), size=(len(labels), 256),
                           p=[0.05, 0.02, 0.88, 0.02, 0.03])
        esl = esl_text(labels, codes, short=split == "test")
        out[split] = SimpleNamespace(
            labels=labels, codes=codes, pixels=_FAKE_VALUES[codes].astype(np.float32),
            esl_plain=esl, esl_gz=gzip.compress(esl, 1),
            libsvm_bz2=bz2.compress(libsvm_text(labels, codes), 1))
    return SimpleNamespace(**out)


@pytest.fixture
def fake_usps_dir(tmp_path, fake_usps) -> Path:
    """A folder holding the fake zip.train.gz and zip.test.gz."""
    folder = tmp_path / "usps-fake"
    folder.mkdir()
    (folder / "zip.train.gz").write_bytes(fake_usps.train.esl_gz)
    (folder / "zip.test.gz").write_bytes(fake_usps.test.esl_gz)
    return folder


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 serving .files (path -> bytes); .requests logs the paths."""
    state = SimpleNamespace(files={}, requests=[])

    class Handler(BaseHTTPRequestHandler):
        def setup(self):
            self.request.settimeout(60)  # not socket.getdefaulttimeout(), which clients may set
            super().setup()

        def do_GET(self):
            state.requests.append(self.path)
            body = state.files.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---- end of data layer fixtures ---------------------------------------------------------------

# ---- a small trained run (analysis: histories, plots, report, predict) -----------------------

TRAINED_RUN_SETTINGS = ["data.name=digits", "data.limit_train=400", "passes=2", "train.lr=0.1",
                        "engine=reference", "train.loss_every=20", "train.history_every=100",
                        "train.snapshot_every=200"]  # lr 0.1: learns something in 800 steps


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder trained for 800 steps on `digits` with the history recorder attached.

    Returns a namespace: dir, cfg, data, run (fit's Run). Tests must not modify the folder.
    """
    import torch

    from lecun1989.analysis.history import HistoryRecorder
    from lecun1989.config import apply_overrides, preset
    from lecun1989.train.loop import fit, load_run_data

    cfg = apply_overrides(preset("paper-sgd"), TRAINED_RUN_SETTINGS)
    data = load_run_data(cfg)
    out = tmp_path_factory.mktemp("trained-run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 steps: more threads only contend on a shared machine
    try:
        run = fit(cfg, data, out, progress=False, log=lambda *a: None,
                  callbacks=[HistoryRecorder(out, cfg)])
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(dir=out, cfg=cfg, data=data, run=run)


@pytest.fixture
def one_thread():
    """Per-pattern updates are fastest on one torch thread (and the machine is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
