"""Downloads through a real local HTTP server: USPS (ESL, LIBSVM fallback, cache), OpenML MNIST."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import numpy as np
import pytest

from lecun1989.data import default_source, load
from lecun1989.data import usps as usps_module
from lecun1989.errors import DataError

pytestmark = pytest.mark.usefixtures("data_env")


def one_line(excinfo) -> str:
    """The message of a DataError, checked to be one line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def fails_fast(source: str) -> str:
    """load(source) from an unreachable server: a DataError within 5 s; its one-line message."""
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        load(source, timeout=2)
    assert time.monotonic() - start < 5
    return one_line(e)


def files_in(folder) -> list[str]:
    """Names of the files (not folders) under folder."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def serve_usps(server, fake_usps, *, esl: bool = True, libsvm: bool = False) -> None:
    """Put the fake USPS files on the server under /base."""
    if esl:
        server.files["/base/zip.train.gz"] = fake_usps.train.esl_gz
        server.files["/base/zip.test.gz"] = fake_usps.test.esl_gz
    if libsvm:
        server.files["/base/usps.bz2"] = fake_usps.train.libsvm_bz2
        server.files["/base/usps.t.bz2"] = fake_usps.test.libsvm_bz2


def assert_is_fake(d, fake_usps) -> None:
    """The loaded digits are exactly the fake set, in its order."""
    np.testing.assert_array_equal(d.train_labels, fake_usps.train.labels)
    np.testing.assert_array_equal(d.test_labels, fake_usps.test.labels)
    np.testing.assert_array_equal(d.train_images.reshape(-1, 256), fake_usps.train.pixels)
    np.testing.assert_array_equal(d.test_images.reshape(-1, 256), fake_usps.test.pixels)


# ---- USPS ----------------------------------------------------------------------------------------

def test_esl_download_then_cache_reused(http_server, fake_usps, data_env, monkeypatch):
    serve_usps(http_server, fake_usps)
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base/")
    assert default_source()[0] == "mnist-5k"
    d = load("usps")
    assert_is_fake(d, fake_usps)
    assert http_server.requests == ["/base/zip.train.gz", "/base/zip.test.gz"]
    assert files_in(data_env) == ["urls.json", "zip.test.gz", "zip.train.gz"]
    assert d.manifest["urls"]["train"] == http_server.url + "/base/zip.train.gz"
    assert d.manifest["found"] == f"cache {data_env / 'usps'}"
    digest = hashlib.sha256(fake_usps.train.esl_gz).hexdigest()
    assert d.manifest["files"][0]["sha256"] == digest
    again = load("usps", download=False)
    assert len(http_server.requests) == 2
    np.testing.assert_array_equal(again.train_images, d.train_images)
    assert default_source()[0] == "usps"


def test_esl_404_falls_back_to_libsvm(http_server, fake_usps, data_env, monkeypatch):
    serve_usps(http_server, fake_usps, esl=False, libsvm=True)
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base")
    d = load("usps")
    assert_is_fake(d, fake_usps)
    assert http_server.requests == ["/base/zip.train.gz", "/base/usps.bz2", "/base/usps.t.bz2"]
    assert files_in(data_env) == ["urls.json", "usps.bz2", "usps.t.bz2"]
    assert d.manifest["files"][1]["format"] == "libsvm"
    load("usps")
    assert len(http_server.requests) == 3


def test_module_constants_are_the_default_bases(http_server, fake_usps, monkeypatch):
    serve_usps(http_server, fake_usps, esl=False, libsvm=True)
    monkeypatch.setattr(usps_module, "ESL_URL", http_server.url + "/esl")
    monkeypatch.setattr(usps_module, "LIBSVM_URL", http_server.url + "/base")
    assert_is_fake(load("usps"), fake_usps)
    assert http_server.requests[0] == "/esl/zip.train.gz"


@pytest.mark.parametrize("corruption", ["garbage", "wrong-counts", "truncated"])
def test_corrupt_download_rejected_and_cache_left_clean(corruption, http_server, fake_usps,
                                                        usps_text, data_env, monkeypatch):
    serve_usps(http_server, fake_usps)
    if corruption == "garbage":
        bad = b"<html>not found</html>" * 10
    elif corruption == "truncated":
        bad = fake_usps.train.esl_gz[: len(fake_usps.train.esl_gz) // 2]
    else:
        bad = gzip.compress(usps_text.relabel_first(fake_usps.train.esl_plain), 1)
    http_server.files["/base/zip.train.gz"] = bad
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base")
    with pytest.raises(DataError) as e:
        load("usps")
    message = one_line(e)
    assert f"{http_server.url}/base/zip.train.gz" in message and "--data-dir" in message
    assert f"{http_server.url}/base/usps.bz2: HTTP 404" in message
    assert files_in(data_env) == []
    assert "/base/zip.test.gz" not in http_server.requests


def test_corrupt_esl_falls_back_to_good_libsvm(http_server, fake_usps, data_env, monkeypatch):
    serve_usps(http_server, fake_usps, libsvm=True)
    http_server.files["/base/zip.test.gz"] = b"\x1f\x8b garbage"
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base")
    assert_is_fake(load("usps"), fake_usps)
    assert "zip.test.gz" not in files_in(data_env) and "zip.train.gz" not in files_in(data_env)


def test_unreachable_server_fails_fast(closed_port_url, data_env, monkeypatch):
    monkeypatch.setenv("LECUN1989_USPS_URL", closed_port_url)
    message = fails_fast("usps")
    assert closed_port_url in message
    assert "put zip.train.gz and zip.test.gz" in message and "--data-dir DIR" in message
    assert files_in(data_env) == []


def test_no_download_when_told_not_to(http_server, fake_usps, monkeypatch):
    serve_usps(http_server, fake_usps)
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base")
    with pytest.raises(DataError) as e:
        load("usps", download=False)
    assert "download is off" in one_line(e) and "--data-dir" in one_line(e)
    assert http_server.requests == []


def test_corrupt_cache_is_reported_not_replaced(http_server, fake_usps, data_env, monkeypatch):
    serve_usps(http_server, fake_usps)
    monkeypatch.setenv("LECUN1989_USPS_URL", http_server.url + "/base")
    load("usps")
    (data_env / "usps" / "zip.test.gz").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load("usps")
    assert "zip.test.gz: empty file" in one_line(e) and f"delete {data_env / 'usps'}" in one_line(e)
    assert len(http_server.requests) == 2


# ---- MNIST through a fake OpenML server ----------------------------------------------------------

FAKE_ROWS = 35


def fake_openml(server, rows: int = FAKE_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Serve a tiny mnist_784 (the JSON API and the ARFF file) the way OpenML does; its arrays."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(rows, 784)) * (rng.random((rows, 784)) < 0.3)
    pixels[0] = 0
    pixels[1] = 255
    labels = np.arange(rows) % 10
    header = ["@RELATION mnist_784", ""]
    header += [f"@ATTRIBUTE pixel{i + 1} NUMERIC" for i in range(784)]
    header += ["@ATTRIBUTE class {0,1,2,3,4,5,6,7,8,9}", "", "@DATA"]
    body = [",".join(map(str, [*p, y])) for p, y in zip(pixels.tolist(), labels, strict=True)]
    arff = ("\n".join(header + body) + "\n").encode()
    api = "/api/v1/json/data"
    features = [{"index": str(i), "name": f"pixel{i + 1}", "data_type": "numeric",
                 "is_target": "false", "is_ignore": "false", "is_row_identifier": "false",
                 "number_of_missing_values": "0"} for i in range(784)]
    features.append({"index": "784", "name": "class", "data_type": "nominal",
                     "nominal_value": [str(d) for d in range(10)], "is_target": "true",
                     "is_ignore": "false", "is_row_identifier": "false",
                     "number_of_missing_values": "0"})
    description = {"id": "554", "name": "mnist_784", "version": "1", "format": "ARFF",
                   "file_id": "52667", "status": "active", "description": "a fake",
                   "url": f"{server.url}/data/v1/download/52667/mnist_784.arff",
                   "md5_checksum": hashlib.md5(arff).hexdigest(),
                   "default_target_attribute": "class"}
    responses = {
        f"{api}/list/data_name/mnist_784/limit/2/data_version/1":
            {"data": {"dataset": [{"did": 554, "name": "mnist_784", "version": 1,
                                   "status": "active", "format": "ARFF"}]}},
        f"{api}/554": {"data_set_description": description},
        f"{api}/features/554": {"data_features": {"feature": features}},
        f"{api}/qualities/554": {"data_qualities": {"quality": [
            {"name": "NumberOfInstances", "value": f"{rows}.0"}]}},
    }
    server.files.update({path: json.dumps(body).encode() for path, body in responses.items()})
    server.files["/data/v1/download/52667/mnist_784.arff"] = arff
    return pixels, labels


def test_mnist_through_fake_openml(http_server, data_env, monkeypatch):
    pixels, labels = fake_openml(http_server)
    monkeypatch.setenv("LECUN1989_OPENML_URL", http_server.url)
    d = load("mnist", sizes=(12, 4), seed=5)
    assert d.train_images.shape == (12, 1, 16, 16) and d.test_images.shape == (4, 1, 16, 16)
    train, test = d.manifest["indices"]["train"], d.manifest["indices"]["test"]
    assert all(0 <= i < 30 for i in train) and all(30 <= i < 35 for i in test)
    assert len(set(train)) == 12 and train != sorted(train)
    np.testing.assert_array_equal(d.train_labels, labels[train])
    np.testing.assert_array_equal(d.test_labels, labels[test])
    for i, image in zip(train, d.train_images, strict=True):
        if i in (0, 1):
            assert (image == (-1 if i == 0 else 1)).all()
    assert d.manifest["resize"]["mode"] == "bilinear" and d.manifest["seed"] == 5
    assert d.manifest["openml"]["md5_checksum"] == hashlib.md5(
        http_server.files["/data/v1/download/52667/mnist_784.arff"]).hexdigest()
    assert len(d.manifest["files"][0]["sha256_uncompressed"]) == 64
    served = len(http_server.requests)
    assert served == 5
    native = load("mnist", geometry=28, sizes=(12, 4), seed=5)
    assert len(http_server.requests) == served
    assert native.manifest["indices"] == d.manifest["indices"]
    expected = (pixels[train] / 255 * 2 - 1).reshape(-1, 1, 28, 28)
    np.testing.assert_allclose(native.train_images, expected, atol=1e-6)
    other = load("mnist", sizes=(12, 4), seed=6)
    assert other.manifest["indices"]["train"] != train


def test_mnist_of_the_wrong_size_needs_sizes(http_server, monkeypatch):
    fake_openml(http_server)
    monkeypatch.setenv("LECUN1989_OPENML_URL", http_server.url)
    with pytest.raises(DataError) as e:
        load("mnist")
    assert "35 digits, expected 70000" in one_line(e)
    with pytest.raises(DataError) as e:
        load("mnist", sizes=(31, 4))
    assert "exceed its train/test parts 30/5" in one_line(e)


def test_damaged_mnist_array_cache(data_env):
    path = data_env / "mnist" / "mnist_784-v1.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError) as e:
        load("mnist")
    assert f"{path}: unreadable" in one_line(e) and f"delete {path}" in one_line(e)
    np.savez(path, pixels=np.zeros((2, 784)), labels=np.zeros(2), info=np.array("{}"))
    with pytest.raises(DataError) as e:
        load("mnist")
    assert "not the arrays lecun1989 writes" in one_line(e)


def test_mnist_offline_fails_fast(closed_port_url, monkeypatch):
    monkeypatch.setenv("LECUN1989_OPENML_URL", closed_port_url)
    message = fails_fast("mnist")
    assert "could not fetch mnist_784" in message and "--data mnist-5k" in message
