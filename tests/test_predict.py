"""`lecun1989 predict`: preparing pictures (NC89 §2) robust to real paper, every picture
format, classification, reject rule, bad files one line each, `--show`."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from pictures import clean_paper, dirty_paper, render_digit, save_grey
from PIL import Image

from lecun1989.analysis.picture import area_weights
from lecun1989.analysis.predict import predict_each, predict_files, prepare, read_grey
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
    ink = (x + 1) / 2
    rows = np.nonzero(ink.sum(1) > 0)[0]
    assert rows.min() == 0 and rows.max() == 15  # the longer side fills the box
    assert ink.sum() == pytest.approx(16 * 16 * 40 / 200, abs=1e-4)  # aspect kept: 16 x 3.2
    columns = ink.sum(0)
    assert (columns * np.arange(16)).sum() / columns.sum() == pytest.approx(7.5)  # centred
    assert x.min() == -1 and x[0, 0] == -1 and x.max() == pytest.approx(1)


def test_area_weights_preserve_ink_and_centre_it():
    for n_in, size in ((7, 16), (40, 16), (333, 16), (16, 16), (100, 20)):
        scale = min(size, 16) / n_in
        w = area_weights(n_in, scale, size)
        np.testing.assert_allclose(w.sum(0), scale)  # each source pixel spreads all its ink
        assert w.sum() == pytest.approx(n_in * scale)
        centre = (w.sum(1) * (np.arange(size) + 0.5)).sum() / w.sum()
        assert centre == pytest.approx(size / 2)


def test_polarity_is_read_from_the_border(tmp_path, trained_run):
    digit = trained_run.data.test_images[5]
    dark = prepare(read_grey(_picture(digit, tmp_path / "a.png")))
    light = prepare(read_grey(_picture(digit, tmp_path / "b.png", dark_on_light=False)))
    np.testing.assert_allclose(dark, light, atol=1e-6)


def test_preparing_a_prepared_digit_changes_it_little(tmp_path, trained_run):
    """Prepared once, a digit fills its box; scaling it up and preparing again gives it back
    (to half a pixel's shift where a faint edge falls under the weak-ink threshold)."""
    changes = []
    for i in range(10):
        digit = trained_run.data.test_images[i]
        once = prepare(read_grey(_picture(digit, tmp_path / "a.png", zoom=(11, 11))))
        twice = prepare(read_grey(_picture(once, tmp_path / "b.png", zoom=(11, 11))))
        changes.append(np.abs(twice - once).mean())
    assert np.mean(changes) < 0.05 and max(changes) < 0.2


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
    ink = np.pad(np.kron((digit.reshape(16, 16) + 1) / 2, np.ones((9, 13))),
                 ((40, 25), (10, 60)))  # as _picture draws it
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)  # black ink, alpha = ink, rest transparent
    rgba[..., 3] = np.round(ink * 255)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    np.testing.assert_allclose(prepare(read_grey(tmp_path / "t.png")), opaque, atol=0.02)


# ---- real paper: shading, ruled lines, specks; every picture format ----------------------

def test_digits_on_shaded_ruled_specked_paper_read_as_on_clean_paper(tmp_path, trained_run):
    """Each digit's 16x16 on dirty paper is close to its 16x16 on clean paper, and the
    digits the network reads with some confidence on clean paper it reads the same."""
    rng = np.random.default_rng(15)
    clean, dirty = [], []
    for i in range(20):
        ink = render_digit(trained_run.data.test_images[i])
        clean.append(save_grey(clean_paper(ink), tmp_path / f"clean{i}.png"))
        dirty.append(save_grey(dirty_paper(ink, rng), tmp_path / f"dirty{i}.png"))
    on_clean, on_dirty = predict_files(trained_run.dir, clean), predict_files(trained_run.dir,
                                                                               dirty)
    confident = 0
    for c, d in zip(on_clean, on_dirty, strict=True):
        assert np.abs(d.image - c.image).mean() < 0.15, d.path
        if c.margin >= 0.3:  # nearer the boundary, any change of a pixel may flip the class
            confident += 1
            assert d.digit == c.digit, d.path
    assert confident >= 10


def test_a_thick_bar_from_edge_to_edge_is_a_stroke_not_a_ruled_line():
    grey = np.ones((100, 100))
    grey[5:15, :] = 0  # a 7's bar, 10% of the picture thick, cropped at both edges
    for r in range(15, 95):
        grey[r, max(0, 90 - r):max(0, 90 - r) + 10] = 0  # its diagonal
    x = prepare(grey)[0]
    assert (x > 0.5).sum(1).max() == 16  # the bar is kept, a full row of ink


def test_a_picture_of_only_ruled_lines_has_no_digit():
    grey = np.ones((120, 120))
    grey[::20] = 0.3
    with pytest.raises(UserError, match="no digit found"):
        prepare(grey)


def _modes(grey8: np.ndarray) -> dict:
    """The same grey picture in every PIL mode predict must read."""
    l_img = Image.fromarray(grey8)
    alpha = 255 - grey8  # ink opaque black, paper transparent
    black = np.zeros_like(grey8)
    return {
        "L": l_img, "RGB": l_img.convert("RGB"),
        "P": l_img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE),
        "LA": Image.fromarray(np.stack([black, alpha], -1), "LA"),
        "RGBA": Image.fromarray(np.stack([black, black, black, alpha], -1), "RGBA"),
        "I;16": Image.fromarray(grey8.astype(np.uint16) * 257),
        "I": Image.fromarray(grey8.astype(np.int32) * 257, "I"),  # 32-bit: TIFF, not PNG
        "1": l_img.convert("1", dither=Image.Dither.NONE),
    }


def test_every_picture_mode_is_read_at_full_depth(tmp_path, trained_run):
    ink = render_digit(trained_run.data.test_images[3])
    grey8 = np.round(clean_paper(ink) * 255).astype(np.uint8)
    want = prepare(grey8 / 255.0)
    for mode, im in _modes(grey8).items():
        path = tmp_path / f"{mode.replace(';', '_')}.{'tif' if mode == 'I' else 'png'}"
        im.save(path)
        with Image.open(path) as back:
            assert back.mode.startswith(mode[0]), (mode, back.mode)
        got = prepare(read_grey(path))
        expected = prepare((grey8 >= 128).astype(float)) if mode == "1" else want  # 1 bit
        assert np.abs(got - expected).mean() < 0.01, mode


def test_a_16_bit_png_is_read_in_its_greys_not_cut_to_black_and_white(tmp_path, trained_run):
    """Issue 14 §4: PIL's convert("L") clips 16-bit values to 255; the picture went blank."""
    ink = render_digit(trained_run.data.test_images[4])
    grey = 0.25 + 0.5 * clean_paper(ink)  # a low-contrast scan: 16-bit values 16k..49k
    Image.fromarray(np.round(grey * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    save_grey(grey, tmp_path / "eight_bit.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    deep = read_grey(tmp_path / "deep.png")
    assert deep.min() == pytest.approx(grey.min(), abs=1e-4)
    assert deep.max() == pytest.approx(grey.max(), abs=1e-4)
    x = prepare(deep)
    # the 8-bit copy differs by its rounding (1/255 of a low-contrast scan: ~1/2 an Otsu bin)
    assert np.abs(x - prepare(read_grey(tmp_path / "eight_bit.png"))).mean() < 0.02
    assert ((x > -0.9) & (x < 0.9)).sum() >= 10  # grey edges, as in the 8-bit copy


# ---- several pictures: one line each, exit 2 at the end if any failed; --show -----------

def test_each_picture_gets_its_own_line_and_a_bad_one_does_not_stop_the_rest(
        tmp_path, trained_run, capsys):
    good = [_picture(trained_run.data.test_images[i], tmp_path / f"g{i}.png") for i in (0, 1)]
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    paths = [good[0], str(bad), good[1], str(blank)]
    assert main(["predict", str(trained_run.dir), *paths]) == 2
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[1].startswith(good[0]) and lines[2].startswith(good[1])
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert str(bad) in errors[0] and "not a readable picture" in errors[0]
    assert str(blank) in errors[1] and "no digit found" in errors[1]
    assert main(["predict", str(trained_run.dir), *paths, "--json"]) == 2
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in records] == paths
    assert ["error" in r for r in records] == [False, True, False, True]
    results = predict_each(trained_run.dir, paths)
    assert [isinstance(r, UserError) for r in results] == [False, True, False, True]
    with pytest.raises(UserError, match="notes.png"):
        predict_files(trained_run.dir, paths)


def test_show_draws_one_picture_per_file_with_every_layer(tmp_path, trained_run, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [_picture(trained_run.data.test_images[i], tmp_path / d / "seven.png")
             for i, d in ((0, "a"), (1, "b"))]
    out = tmp_path / "shown"
    assert main(["predict", str(trained_run.dir), *paths, "--show", "--out", str(out)]) == 0
    pictures = sorted(p.name for p in out.iterdir())
    assert pictures == ["seven-2-seen.png", "seven-seen.png"]  # no picture overwrites another
    text = capsys.readouterr().out
    assert f"shown in {out / 'seven-seen.png'}" in text
    result = predict_files(trained_run.dir, paths[:1])[0]
    assert {k: v.shape for k, v in result.layers.items()} == {
        "h1": (12, 8, 8), "h2": (12, 4, 4), "h3": (30,), "out": (10,)}
    np.testing.assert_allclose(result.layers["out"], result.outputs, atol=1e-5)
    with Image.open(out / "seven-seen.png") as im:
        assert im.width > 1000 and im.height > 700
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 20  # drawn, not blank
    (tmp_path / "file").write_text("")
    assert main(["predict", str(trained_run.dir), paths[0], "--show", "--out",
                 str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["predict", str(trained_run.dir), paths[0], "--out", str(out)]) == 2
    assert "add --show" in capsys.readouterr().err
