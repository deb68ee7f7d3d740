"""The pictures of a run: every PNG is written, readable, titled, and shows the run's numbers."""

from __future__ import annotations

import json
import shutil

import matplotlib
import numpy as np
import pytest
from PIL import Image

from lecun1989 import paper
from lecun1989.analysis import plots, timeline
from lecun1989.analysis.history import read_loss, read_pass_weights
from lecun1989.cli.main import main
from lecun1989.errors import UserError
from lecun1989.model.net import init_params
from lecun1989.train.metrics import reject_curve


@pytest.fixture(scope="module")
def drawn(trained_run, tmp_path_factory):
    """The trained run's figures (the first test 3's maps), and the PNGs of `lecun1989 plot`."""
    out = tmp_path_factory.mktemp("plots")
    assert main(["plot", str(trained_run.dir), "--out", str(out), "--digit", "3"]) == 0
    view = plots.load_run(trained_run.dir)
    figs, skipped = plots.run_figures(view, digit=3)
    return out, view, figs, skipped


def first_three(view) -> int:
    return int(np.nonzero(view.data.test_labels == 3)[0][0])


def test_every_picture_is_a_readable_png_of_a_readable_size(drawn):
    out, _, figs, skipped = drawn
    assert skipped == {} and set(figs) == set(plots.PICTURES)
    assert all((out / f"{name}.gif").is_file() for name in plots.ANIMATIONS)
    for name in plots.PICTURES:
        with Image.open(out / f"{name}.png") as im:
            width, height = im.size
            grey = np.asarray(im.convert("L"), dtype=float)
        assert 600 <= width <= 2400 and 300 <= height <= 1600, (name, im.size)
        assert grey.std() > 10, f"{name}.png looks blank"


def test_nothing_drawn_touches_a_pictures_edge(drawn):
    """A label or colour bar cut off by the edge of the PNG would touch it: the margin is white."""
    for name in plots.PICTURES:
        with Image.open(drawn[0] / f"{name}.png") as im:
            grey = np.asarray(im.convert("L"))
        for side, strip in (("top", grey[:6]), ("bottom", grey[-6:]), ("left", grey[:, :6]),
                            ("right", grey[:, -6:])):
            assert strip.min() == 255, f"{name}.png: something is cut at the {side}"


def test_every_picture_has_a_title_and_charts_have_axis_labels(drawn):
    figs = drawn[2]
    for name, fig in figs.items():
        titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text()
                                                         if fig._suptitle else ""]
        assert any(titles), name
    for name in ("loss", "metrics", "params", "confusion", "reject"):
        ax = figs[name].axes[0]
        assert ax.get_ylabel(), name
        assert ax.get_xlabel() or figs[name].axes[-2].get_xlabel(), name


def test_loss_curve_plots_the_recorded_loss(drawn, trained_run):
    ax = drawn[2]["loss"].axes[0]
    loss = read_loss(trained_run.dir)
    raw, rolling = ax.lines[0], ax.lines[1]
    np.testing.assert_array_equal(raw.get_ydata(), loss["loss"])
    np.testing.assert_array_equal(raw.get_xdata(), loss["step"])
    window = len(loss["loss"]) - len(rolling.get_ydata()) + 1
    assert rolling.get_ydata()[0] == pytest.approx(loss["loss"][:window].mean())
    every = trained_run.cfg.train.loss_every  # 20: each point the mean over 20 patterns
    assert raw.get_label() == f"mean over {every} patterns"
    assert rolling.get_label() == f"rolling mean over {window * every} patterns"


def test_pass_metrics_show_the_run_and_the_paper(drawn, trained_run):
    mse_ax, error_ax = drawn[2]["metrics"].axes[:2]
    records = trained_run.run.summary["passes"]
    lines = {line.get_label(): line for line in error_ax.lines}
    np.testing.assert_allclose(lines["test on digits"].get_ydata(),
                               [r["test"]["error"] * 100 for r in records])
    paper_lines = {line.get_label(): line.get_ydata()[0] for line in mse_ax.lines
                   if line.get_label().startswith("paper")}
    assert sorted(paper_lines.values()) == [paper.RESULTS["train"]["mse"],
                                            paper.RESULTS["test"]["mse"]]


def test_reject_curve_and_the_papers_point(drawn, trained_run):
    ax = drawn[2]["reject"].axes[0]
    view = drawn[1]
    rejected, error = reject_curve(view.outputs, view.data.test_labels)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), error * 100)
    star = [line for line in ax.lines if line.get_marker() == "*"][0]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == pytest.approx((12.1, 1.0))
    final = trained_run.run.summary["final"]["test"]["reject_for_1pct"]
    dot = [line for line in ax.lines if line.get_marker() == "o"][0]
    assert dot.get_xdata()[0] == pytest.approx(final * 100)


def test_confusion_and_misclassified_count_the_test_set(drawn, trained_run):
    figs, view = drawn[2], drawn[1]
    counts = [int(t.get_text()) for t in figs["confusion"].axes[0].texts]
    assert sum(counts) == len(view.data.test_labels)
    misses = trained_run.run.summary["final"]["test"]["misses"]
    diagonal = sum(int(t.get_text()) for t in figs["confusion"].axes[0].texts
                   if t.get_position()[0] == t.get_position()[1])
    assert diagonal == len(view.data.test_labels) - misses
    captions = [t.get_text() for t in figs["misclassified"].axes[0].texts]
    assert len(captions) == min(misses, 60)
    predicted = view.outputs.argmax(1)
    wrong = {f"{y} -> {p}" for y, p in zip(view.data.test_labels, predicted, strict=True)
             if y != p}
    assert set(captions) <= wrong


def test_feature_maps_show_every_layer_of_the_first_test_three(drawn):
    view, fig = drawn[1], drawn[2]["feature_maps"]
    index = first_three(view)
    assert index > 0  # test digit 0 is no 3 here: --digit picks by class, not by place
    layers = plots.network_layers(view, index)
    assert layers["h1"].shape == (1, 12, 8, 8) and layers["h2"].shape == (1, 12, 4, 4)
    ax_in, ax_maps, ax_h3, ax_out = fig.axes[:4]
    np.testing.assert_array_equal(ax_in.images[0].get_array(), view.data.test_images[index, 0])
    mosaic = ax_maps.images[0].get_array()  # six maps a row: H1 0-5, H1 6-11, H2 0-5, H2 6-11
    np.testing.assert_allclose(mosaic[1:9, 1:9], layers["h1"][0, 0], rtol=1e-6)
    np.testing.assert_allclose(mosaic[10:18, 1:9], layers["h1"][0, 6], rtol=1e-6)
    np.testing.assert_allclose(mosaic[19:27:2, 1:9:2], layers["h2"][0, 0], rtol=1e-6)
    np.testing.assert_allclose(mosaic[28:36:2, 10:18:2], layers["h2"][0, 7], rtol=1e-6)
    assert ax_maps.images[0].get_cmap().name.startswith("gray_r")  # greys by default
    np.testing.assert_allclose(ax_h3.images[0].get_array().ravel(), layers["h3"][0], rtol=1e-6)
    bars = [b.get_width() for b in ax_out.patches]
    np.testing.assert_allclose(bars, layers["out"][0], rtol=1e-6)
    targets = sorted(line.get_xdata()[0] for line in ax_out.lines if line.get_linestyle() == ":")
    assert targets == [-view.cfg.train.target, view.cfg.train.target]
    assert "label 3" in ax_in.get_title()
    assert f"predicted {int(view.outputs[index].argmax())}" in ax_in.get_title()


def test_choose_digit_by_class_or_by_index(trained_run, tmp_path, capsys):
    labels = np.array([5, 3, 3, 0])
    assert plots.choose_digit(labels, digit=3) == 1
    assert plots.choose_digit(labels, index=2) == 2 and plots.choose_digit(labels) == 0
    for kwargs in ({"digit": 7}, {"digit": 12}, {"index": 4}, {"digit": 3, "index": 1}):
        with pytest.raises(UserError):
            plots.choose_digit(labels, **kwargs)
    for flags in (["--digit", "12"], ["--index", "100000"]):
        assert main(["plot", str(trained_run.dir), "--out", str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and flags[0] in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_learning_shows_the_kernels_and_maps_of_each_pass(drawn, trained_run):
    view, fig = drawn[1], drawn[2]["learning"]
    weights = read_pass_weights(trained_run.dir)
    assert len(weights) == trained_run.cfg.train.passes + 1 == 3
    assert timeline.learning_passes(2) == [0, 1, 2]
    assert timeline.learning_passes(23) == [0, 1, 2, 5, 10, 23]
    assert timeline.learning_passes(8) == [0, 1, 2, 5, 8]
    kernels_ax, maps_ax = fig.axes[:2]
    assert [t.get_text() for t in kernels_ax.get_yticklabels()] == [
        "initial", "after pass 1", "after pass 2"]
    k = kernels_ax.images[0].get_array()  # 3 rows of 12 kernels, 5x5 each, 1 pixel apart
    initial = init_params(trained_run.cfg.model, trained_run.cfg.seed)["h1_w"]
    for row, expected in enumerate([initial, weights[1]["h1_w"], view.params["h1_w"]]):
        for j in (0, 11):
            y, x = 1 + row * 6, 1 + j * 6
            np.testing.assert_allclose(k[y:y + 5, x:x + 5], expected[j, 0], rtol=1e-6)
    assert not np.allclose(k[1:6, 1:6], k[13:18, 1:6])  # the kernel changed while learning
    maps = maps_ax.images[0].get_array()  # the last row: the final weights' maps
    final = plots.network_layers(view, first_three(view))["h1"][0]
    np.testing.assert_allclose(maps[19:27, 1:9], final[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[19:27, 100:108], final[11], rtol=1e-5, atol=1e-6)


def test_the_gif_has_a_frame_per_pass_showing_its_kernels(drawn, trained_run):
    weights = read_pass_weights(trained_run.dir)
    lim = max(float(np.abs(w["h1_w"]).max()) for w in weights)
    cmap = matplotlib.colormaps["RdBu_r"]
    frames = []
    with Image.open(drawn[0] / "kernels_by_pass.gif") as gif:
        assert gif.n_frames == len(weights) == trained_run.cfg.train.passes + 1
        for p in range(gif.n_frames):
            gif.seek(p)
            frames.append(np.asarray(gif.convert("RGB"), dtype=int))
    for p, frame in enumerate(frames):
        for k, (i, j) in ((0, (0, 0)), (7, (2, 3)), (11, (4, 4))):
            y, x = timeline.kernel_origin(k)
            pixel = frame[y + i * timeline.GIF_CELL + 3, x + j * timeline.GIF_CELL + 3]
            value = weights[p]["h1_w"][k, 0, i, j]
            expected = np.array(cmap((value + lim) / (2 * lim))[:3]) * 255
            np.testing.assert_allclose(pixel, expected, atol=8, err_msg=f"pass {p} kernel {k}")
    for a, b in zip(frames, frames[1:], strict=False):
        assert np.abs(a - b).max() > 20  # every pass moved some weight visibly


def test_kernels_show_the_connection_table(drawn):
    h2 = drawn[2]["kernels"].axes[1].images[0].get_array()
    tiles = [h2[1 + 6 * j:6 + 6 * j, 1 + 6 * i:6 + 6 * i] for j in range(12) for i in range(12)]
    unconnected = sum(np.all(np.ma.getmaskarray(t) | np.isnan(np.ma.getdata(t))) for t in tiles)
    assert unconnected == 12 * 12 - 12 * 8  # each H2 map sees 8 of 12 (Karpathy's table)


def test_digit_grid_captions_are_the_labels(drawn):
    view, ax = drawn[1], drawn[2]["digits"].axes[0]
    captions = [t.get_text() for t in ax.texts]
    assert captions == [f"label {y}" for y in view.data.train_labels[:40]]


def test_plot_without_weights_draws_the_rest_and_says_why(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "no-weights"
    shutil.copytree(trained_run.dir, run_dir, ignore=shutil.ignore_patterns("model.safetensors"))
    assert main(["plot", str(run_dir)]) == 0
    out = capsys.readouterr().out
    written = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert written == ["digits.png", "kernels_by_pass.gif", "loss.png", "metrics.png",
                       "params.png"]  # the GIF needs only pass_weights.safetensors
    assert out.count("skipped") == 6 and "no such checkpoint" in out


def test_plot_of_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "config.json" in err


def test_data_that_differ_from_the_runs_are_flagged(trained_run, tmp_path):
    assert plots.load_run(trained_run.dir, with_data=True).warnings == []
    run_dir = tmp_path / "other-data"
    shutil.copytree(trained_run.dir, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"]["limit_train"] = 300  # not the digits the run was trained on
    (run_dir / "config.json").write_text(json.dumps(config))
    view = plots.load_run(run_dir)
    assert len(view.warnings) == 1 and "differ" in view.warnings[0]


def test_the_error_axis_reads_in_percent(drawn):
    error_ax = drawn[2]["metrics"].axes[1]
    formatter = error_ax.yaxis.get_major_formatter()
    assert [formatter(v, 0) for v in (0.5, 1, 2, 5, 10)] == ["0.5%", "1%", "2%", "5%", "10%"]
    low, high = error_ax.get_ylim()
    shown = [v for v in error_ax.get_yticks() if low <= v <= high]
    assert len(shown) >= 3  # enough labelled ticks to read a value off


def test_the_output_biases_are_one_line_per_digit(drawn, trained_run):
    ax = drawn[2]["params"].axes[7]  # row 4 (output), column 2 (biases)
    weights = read_pass_weights(trained_run.dir)
    steps_per_pass = drawn[1].steps_per_pass
    assert len(ax.lines) == 10 and not ax.collections
    for d, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_ydata(), [w["out_b"][d] for w in weights])
        np.testing.assert_array_equal(line.get_xdata(), np.arange(len(weights)) * steps_per_pass)


def test_runs_overlay_draws_each_runs_curves(trained_run):
    loss = read_loss(trained_run.dir)
    records = trained_run.run.summary["passes"]
    shifted = [{**r, "test": {**r["test"], "error": r["test"]["error"] / 2}} for r in records]
    fig = timeline.runs_overlay({"seed-0": (loss, records), "seed-1": (loss, shifted)})
    lines = {line.get_label(): line for line in fig.axes[1].lines}
    np.testing.assert_allclose(lines["seed-0 test"].get_ydata(),
                               [r["test"]["error"] * 100 for r in records])
    np.testing.assert_allclose(lines["seed-1 test"].get_ydata(),
                               [r["test"]["error"] * 50 for r in records])
    assert [line.get_label() for line in fig.axes[0].lines] == ["seed-0", "seed-1"]


def test_overlay_of_run_folders_reads_each_folder(trained_run, tmp_path):
    runs = [tmp_path / "seed-0", tmp_path / "seed-1"]
    for d in runs:
        shutil.copytree(trained_run.dir, d, ignore=shutil.ignore_patterns("plots"))
    fig = timeline.overlay_run_dirs(runs)
    errors = [r["test"]["error"] * 100 for r in trained_run.run.summary["passes"]]
    for name in ("seed-0 test", "seed-1 test"):
        line = next(x for x in fig.axes[1].lines if x.get_label() == name)
        np.testing.assert_allclose(line.get_ydata(), errors)
    with pytest.raises(UserError, match="metrics.jsonl"):
        timeline.overlay_run_dirs([tmp_path])


def test_a_loss_within_one_decade_still_gets_several_labelled_ticks():
    steps = np.arange(20, 620, 20)
    values = np.linspace(0.6, 0.3, len(steps))  # less than a decade: 1-2-5 ticks give one
    fig = plots.loss_curve({"step": steps, "pass": 1 + (steps > 300), "loss": values})
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    labels = [ax.yaxis.get_major_formatter()(v, 0) for v in ax.get_yticks() if low <= v <= high]
    assert labels == ["0.3", "0.4", "0.5", "0.6"]
