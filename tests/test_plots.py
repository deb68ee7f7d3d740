"""The pictures of a run: every PNG is written, readable, titled, and shows the run's numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from lecun1989 import paper
from lecun1989.analysis import plots
from lecun1989.analysis.history import read_loss
from lecun1989.cli.main import main
from lecun1989.train.metrics import reject_curve


@pytest.fixture(scope="module")
def drawn(trained_run, tmp_path_factory):
    """The trained run's figures, and their PNGs written by `lecun1989 plot`."""
    out = tmp_path_factory.mktemp("plots")
    assert main(["plot", str(trained_run.dir), "--out", str(out), "--digit", "3"]) == 0
    view = plots.load_run(trained_run.dir)
    figs, skipped = plots.run_figures(view, digit=3)
    return out, view, figs, skipped


def test_every_picture_is_a_readable_png_of_a_readable_size(drawn):
    out, _, figs, skipped = drawn
    assert skipped == {} and set(figs) == set(plots.PICTURES)
    for name in plots.PICTURES:
        with Image.open(out / f"{name}.png") as im:
            width, height = im.size
            grey = np.asarray(im.convert("L"), dtype=float)
        assert 600 <= width <= 2400 and 300 <= height <= 1600, (name, im.size)
        assert grey.std() > 10, f"{name}.png looks blank"


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


def test_feature_maps_show_the_networks_layers(drawn):
    view, fig = drawn[1], drawn[2]["feature_maps"]
    layers = plots.network_layers(view, 3)
    assert layers["h1"].shape == (1, 12, 8, 8) and layers["h2"].shape == (1, 12, 4, 4)
    mosaic = fig.axes[1].images[0].get_array()
    np.testing.assert_allclose(mosaic[1:9, 1:9], layers["h1"][0, 0], rtol=1e-6)
    np.testing.assert_allclose(mosaic[10:18:2, 1:9:2], layers["h2"][0, 0], rtol=1e-6)
    assert "label" in fig.axes[0].get_title()


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
    written = sorted(p.stem for p in (run_dir / "plots").glob("*.png"))
    assert written == ["digits", "loss", "metrics", "params"]
    assert out.count("skipped") == 5 and "no such checkpoint" in out


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
