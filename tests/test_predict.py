"""`lecun1989 predict`: preparing pictures (NC89 §2), classification, reject rule, bad files."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lecun1989.analysis.predict import predict_files, prepare, read_grey
from lecun1989.cli.main import main
from lecun1989.engines.reference import ReferenceEngine
from lecun1989.errors import UserError
from lecun1989.train import checkpoint
from lecun1989.train.metrics import margins, reject_for_error, reject_threshold


def _picture(digit: np.ndarray, path, *, zoom=(9, 13), pad=((40, 25), (10, 60)),
             dark_on_light=True) -> str:
    """Write a 16x16 [-1, 1] digit as a big, off-centre, non-square picture file."""
    ink = (np.asarray(digit).reshape(16, 16) + 1) / 2
    big = np.pad(np.kron(ink, np.ones(zoom)), pad)
    grey = 1 - big if dark_on_light else big
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(path)
    return str(path)


def test_a_tall_stroke_fills_the_height_keeps_its_aspect_and_is_centred():
    grey = np.ones((300, 200))
    grey[50:250, 90:130] = 0.0  # a dark bar, 200 tall and 40 wide, off-centre, on white paper
    x = prepare(grey)[0]
    assert x.shape == (16, 16) and x.dtype == np.float32
    ink = x > 0
    rows, cols = np.nonzero(ink)
    assert rows.min() == 0 and rows.max() == 15  # the longer side fills the box
    assert cols.max() - cols.min() + 1 == round(16 * 40 / 200)  # aspect ratio kept
    assert abs((cols.min() + cols.max()) / 2 - 7.5) <= 0.5  # centred
    assert x.min() == -1 and x[0, 0] == -1 and x.max() == pytest.approx(1)


def test_polarity_is_read_from_the_border(tmp_path, trained_run):
    digit = trained_run.data.test_images[5]
    dark = prepare(read_grey(_picture(digit, tmp_path / "a.png")))
    light = prepare(read_grey(_picture(digit, tmp_path / "b.png", dark_on_light=False)))
    np.testing.assert_allclose(dark, light, atol=1e-6)


def test_preparing_a_prepared_digit_changes_it_little(tmp_path, trained_run):
    """Prepared once, a digit fills its box; scaling it up and preparing again gives it back."""
    for i in range(10):
        digit = trained_run.data.test_images[i]
        once = prepare(read_grey(_picture(digit, tmp_path / "a.png", zoom=(11, 11))))
        twice = prepare(read_grey(_picture(once, tmp_path / "b.png", zoom=(11, 11))))
        assert np.abs(twice - once).mean() < 0.05


def test_predictions_are_the_networks_outputs_on_the_prepared_pictures(tmp_path, trained_run):
    paths = [_picture(trained_run.data.test_images[i], tmp_path / f"{i}.png") for i in range(8)]
    jpeg = tmp_path / "0.jpg"
    Image.open(paths[0]).convert("RGB").save(jpeg, quality=90)
    results = predict_files(trained_run.dir, [*paths, str(jpeg)])
    cfg, params, _, _ = checkpoint.load(trained_run.dir)
    outputs = ReferenceEngine([cfg], [params]).predict(np.stack([r.image for r in results]))[0]
    for r, o in zip(results, outputs, strict=True):
        np.testing.assert_allclose(r.outputs, o)
        assert r.digit == o.argmax() and r.margin == pytest.approx(np.sort(o)[-1] - np.sort(o)[-2])
        assert r.rejected == (r.margin < r.threshold)
    assert results[-1].digit == results[0].digit  # JPEG of the same picture


def test_reject_threshold_reproduces_the_reject_rate(trained_run):
    """Rejecting margin < threshold rejects reject_for_1pct of the digits, <= 1% error left."""
    cfg, params, _, _ = checkpoint.load(trained_run.dir)
    outputs = ReferenceEngine([cfg], [params]).predict(trained_run.data.test_images)[0]
    labels = trained_run.data.test_labels
    threshold = reject_threshold(outputs, labels)
    kept = margins(outputs) >= threshold
    assert 1 - kept.mean() == pytest.approx(reject_for_error(outputs, labels))
    assert (outputs[kept].argmax(1) != labels[kept]).mean() <= 0.01
    stored = trained_run.run.summary["final"]["test"]["reject_threshold_1pct"]
    assert stored == pytest.approx(threshold)


def test_threshold_comes_from_the_summary_or_is_recomputed(tmp_path, trained_run):
    picture = _picture(trained_run.data.test_images[0], tmp_path / "d.png")
    stored = predict_files(trained_run.dir, [picture])[0]
    assert "summary.json" in stored.threshold_source and "recomputed" not in stored.threshold_source
    run_dir = tmp_path / "no-summary"
    shutil.copytree(trained_run.dir, run_dir, ignore=shutil.ignore_patterns("summary.json"))
    again = predict_files(run_dir / "model.safetensors", [picture])[0]
    assert again.threshold_source.startswith("recomputed on the digits test set")
    assert again.threshold == pytest.approx(stored.threshold)


def test_cli_prints_digit_outputs_margin_and_verdict(tmp_path, trained_run, capsys):
    picture = _picture(trained_run.data.test_images[1], tmp_path / "d.png")
    assert main(["predict", str(trained_run.dir), picture, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["outputs"]) == 10 and got["digit"] == int(np.argmax(got["outputs"]))
    assert got["rejected"] == (got["margin"] < got["threshold"])
    assert main(["predict", str(trained_run.dir), picture]) == 0
    text = capsys.readouterr().out
    assert f"d.png: {got['digit']}  margin {got['margin']:.3f}" in text
    assert ("accepted" in text) != ("REJECTED" in text) and "summary.json" in text


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width x height grey pixels."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"this is not a picture\n", "not a readable picture"),
    ("cut.png", None, "not a readable picture"),
    ("huge.png", _png_header(9000, 9000), "too large"),
    ("bomb.png", _png_header(40000, 40000), "decompression bomb"),
    ("blank.png", "blank", "no digit found"),
    ("missing.png", "missing", "no such file"),
])
def test_bad_pictures_are_one_line_errors(tmp_path, trained_run, capsys, name, content, message):
    path = tmp_path / name
    if content is None:  # a real PNG, truncated
        _picture(trained_run.data.test_images[0], path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "blank":
        Image.new("L", (50, 50), 255).save(path)
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        prepare(read_grey(path))
    assert main(["predict", str(trained_run.dir), str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_transparent_background_counts_as_paper(tmp_path, trained_run):
    digit = trained_run.data.test_images[2]
    opaque = prepare(read_grey(_picture(digit, tmp_path / "a.png")))
    ink = (np.kron((digit.reshape(16, 16) + 1) / 2, np.ones((9, 13))))
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)  # black ink, alpha = ink, rest transparent
    rgba[..., 3] = np.round(ink * 255)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    np.testing.assert_allclose(prepare(read_grey(tmp_path / "t.png")), opaque, atol=0.02)
