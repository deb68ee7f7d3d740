"""`lecun1989 demo`: the page, in a real browser (headless Debian Chromium through Playwright).

The page's forward pass must be Net1989's, its 16x16 predict's, and it must stand alone:
no network request, no console error, usable 375 px wide.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pictures import dirty_paper, render_digit

from lecun1989.analysis.demo import demo_data, write_demo
from lecun1989.analysis.history import read_pass_weights
from lecun1989.analysis.predict import predict_files, prepare, read_grey
from lecun1989.cli.main import main
from lecun1989.model.net import Net1989

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# a 3 in the drawing pad's unit square: the points one stroke passes through
THREE = [(0.3, 0.2), (0.45, 0.13), (0.6, 0.15), (0.67, 0.25), (0.62, 0.38), (0.48, 0.47),
         (0.63, 0.53), (0.7, 0.65), (0.66, 0.78), (0.5, 0.86), (0.32, 0.8)]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; the tests skip (saying why) when it or Playwright is absent."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is not installed (pip install -r "
                                          "requirements.lock)")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_file(trained_run, tmp_path_factory) -> Path:
    return write_demo(trained_run.dir, tmp_path_factory.mktemp("demo") / "demo.html")


@pytest.fixture
def page(browser, page_file):
    """The demo page opened from file://, with every request and console message logged."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.requests, pg.problems = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("console", lambda m: m.type in ("error", "warning") and pg.problems.append(m.text))
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.goto(page_file.as_uri())
    pg.wait_for_function("window.lecun1989 !== undefined")
    yield pg
    context.close()


def _draw(pg, points, box=None):
    """One stroke with real mouse events through `points` (the pad's unit square)."""
    box = box or pg.locator("#pad").bounding_box()
    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    pg.mouse.move(*xy[0])
    pg.mouse.down()
    for x, y in xy[1:]:
        pg.mouse.move(x, y, steps=5)
    pg.mouse.up()
    pg.wait_for_function("window.lecun1989.state().input !== null")
    pg.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _oracle(cfg, params, images: np.ndarray) -> dict:
    """Net1989.layers in float64 on the run's weights (exactly representable in float64)."""
    net = Net1989(dataclasses.replace(cfg.model, dtype="float64"))
    net.load_numpy_params({k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
    net.eval()
    with torch.no_grad():
        layers = net.layers(torch.from_numpy(images.astype(np.float64)))
    return {k: v.numpy().reshape(len(images), -1) for k, v in layers.items()}


def test_every_layer_equals_the_python_model_for_every_pass(page, trained_run):
    passes = read_pass_weights(trained_run.dir)
    assert len(passes) == trained_run.cfg.train.passes + 1 == page.evaluate(
        "window.lecun1989.passes")
    images = trained_run.data.test_images[:120]
    outputs = []
    for p, params in enumerate(passes):
        got = page.evaluate("([xs, p]) => xs.map(x => window.lecun1989.forward(x, p))",
                            [images.reshape(len(images), -1).tolist(), p])
        want = _oracle(trained_run.cfg, params, images)
        for name in ("h1", "h2", "h3", "out"):
            page_values = np.array([g[name] for g in got])
            np.testing.assert_allclose(page_values, want[name], rtol=0, atol=1e-5,
                                       err_msg=f"pass {p}, {name}")
        outputs.append(want["out"])
    assert np.abs(outputs[0] - outputs[-1]).max() > 0.1  # the slider swaps real weights


def test_the_page_prepares_a_picture_exactly_as_predict(page, trained_run):
    """The JavaScript port of every step (shading, Otsu, ruled lines, specks, box, scaling)
    on a generated dirty picture: the same 16x16 to 1e-6 (the order of additions in the
    pixel-area averaging, and predict's float32 result, differ; any different decision in a
    threshold, a line or a speck would move pixels by 1/256 or more)."""
    for i, seed in ((0, 1), (7, 2)):
        grey = dirty_paper(render_digit(trained_run.data.test_images[i]),
                           np.random.default_rng(seed))
        h, w = grey.shape
        got = page.evaluate("([g, w, h]) => Array.from(window.lecun1989.prepareGrey("
                            "Float64Array.from(g), w, h))", [grey.ravel().tolist(), w, h])
        np.testing.assert_allclose(np.array(got).reshape(16, 16), prepare(grey)[0], atol=1e-6)


def test_a_drawn_stroke_gives_predicts_16x16_and_class(page, trained_run, tmp_path):
    """A 3 drawn with real mouse events; the canvas saved as PNG and given to predict."""
    _draw(page, THREE)
    state = page.evaluate("window.lecun1989.state()")
    png = page.evaluate("window.lecun1989.canvasPNG()")
    path = tmp_path / "drawn.png"
    path.write_bytes(base64.b64decode(png.split(",", 1)[1]))
    x = np.array(state["input"]).reshape(16, 16)
    assert (x > 0).sum() > 20  # a digit, not an empty pad
    np.testing.assert_allclose(x, prepare(read_grey(path))[0], atol=1e-6)  # as above
    result = predict_files(trained_run.dir, [path])[0]
    assert int(np.argmax(state["layers"]["out"])) == result.digit
    np.testing.assert_allclose(state["layers"]["out"], result.outputs, atol=1e-5)
    verdict = page.inner_text("#verdict")
    assert ("accepted" in verdict) == (not result.rejected)
    assert page.inner_text("#digit") == str(result.digit)


def test_undo_clear_slider_and_wrong_digits(page, trained_run):
    _draw(page, THREE)
    first = page.evaluate("window.lecun1989.state().input")
    _draw(page, [(0.1, 0.9), (0.9, 0.9)])
    assert page.evaluate("window.lecun1989.state().input") != first
    page.click("#undo")
    assert page.evaluate("window.lecun1989.state().input") == first
    before = page.evaluate("window.lecun1989.state().layers.out")
    page.locator("#pass").fill("0")
    state = page.evaluate("window.lecun1989.state()")
    assert state["pass"] == 0 and state["layers"]["out"] != before
    assert "before training" in page.inner_text("#passinfo")
    data = demo_data(trained_run.dir)
    assert len(data["wrong"]["index"]) == trained_run.run.summary["final"]["test"]["misses"]
    page.click("#next")
    state = page.evaluate("window.lecun1989.state()")
    k = data["wrong"]["index"][0]
    np.testing.assert_allclose(state["input"], trained_run.data.test_images[k].ravel(),
                               atol=1e-7)
    assert f"#{k}" in page.inner_text("#wronginfo")
    page.click("#clear")
    assert page.evaluate("window.lecun1989.state().input") is None
    assert page.inner_text("#digit") == "?"


def test_no_network_request_and_no_console_error(browser, page_file):
    context = browser.new_context()
    pg = context.new_page()
    routed, problems = [], []
    pg.route("**/*", lambda route: (routed.append(route.request.url),
                                    route.continue_() if route.request.url == page_file.as_uri()
                                    else route.abort()))
    pg.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    pg.on("pageerror", lambda e: problems.append(str(e)))
    requests = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(page_file.as_uri())
    pg.wait_for_function("window.lecun1989 !== undefined")
    _draw(pg, THREE)
    pg.click("#next")
    pg.locator("#pass").fill("1")
    pg.click("#clear")
    assert requests == [page_file.as_uri()], requests
    assert all(url == page_file.as_uri() for url in routed), routed
    assert problems == []
    context.close()


def test_usable_375_px_wide_with_a_finger(browser, page_file, trained_run):
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True,
                                  is_mobile=True, device_scale_factor=2)
    pg = context.new_page()
    pg.goto(page_file.as_uri())
    pg.wait_for_function("window.lecun1989 !== undefined")
    assert pg.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    for selector in ("#pad", "#undo", "#clear", "#seen", "#pass", "#next", "#h1 canvas"):
        box = pg.locator(selector).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
    assert pg.locator("#pad").bounding_box()["width"] >= 250  # room to draw
    box = pg.locator("#pad").bounding_box()
    cdp = context.new_cdp_session(pg)  # a finger: touch events, as a phone sends them

    def touch(kind, x, y):
        points = [] if kind == "touchEnd" else [
            {"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", *THREE[0])
    for x, y in THREE[1:]:
        touch("touchMove", x, y)
    touch("touchEnd", 0, 0)
    pg.wait_for_function("window.lecun1989.state().input !== null")
    assert pg.inner_text("#digit") in [str(d) for d in range(10)]
    context.close()


def test_cli_writes_the_page_and_refuses_bad_places(trained_run, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["demo", str(trained_run.dir), "--out", str(out)]) == 0
    html = out.read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    data = json.loads(html.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert len(data["pass_labels"]) == trained_run.cfg.train.passes + 1
    assert main(["demo", str(trained_run.dir), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["demo", str(tmp_path / "nowhere")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_run_without_per_pass_weights_shows_its_final_weights(trained_run, tmp_path):
    run = tmp_path / "old-run"
    shutil.copytree(trained_run.dir, run,
                    ignore=shutil.ignore_patterns("pass_weights.safetensors"))
    data = demo_data(run)
    assert len(data["pass_labels"]) == 1 and "final" in data["pass_labels"][0]
    per_pass = sum(int(np.prod(s)) for s in data["model"]["shapes"].values())
    assert len(base64.b64decode(data["weights"])) == per_pass * 4


def test_the_page_follows_the_runs_architecture(browser, tmp_path):
    """Per-map biases, a full connection table, ReLU, linear outputs, 0-padding, 28x28
    inputs (MNIST geometry, a 20x20 box) and float64 weights: the page reads them all."""
    from lecun1989.analysis.history import HistoryRecorder
    from lecun1989.config import apply_overrides, preset
    from lecun1989.train.loop import fit, load_run_data

    cfg = apply_overrides(preset("paper-sgd"), [
        "data.name=mnist-5k", "data.limit_train=30", "passes=1", "engine=reference",
        "model.bias=map", "model.table=full", "model.activation=relu",
        "model.output_activation=false", "model.pad_value=0", "model.input_size=28",
        "model.dtype=float64", "train.loss_every=10"])
    data = load_run_data(cfg)
    fit(cfg, data, tmp_path / "run", progress=False, log=lambda *a: None,
        callbacks=[HistoryRecorder(tmp_path / "run", cfg)])
    page_file = write_demo(tmp_path / "run", tmp_path / "demo.html")
    pg = browser.new_page()
    pg.goto(page_file.as_uri())
    pg.wait_for_function("window.lecun1989 !== undefined")
    images = data.test_images[:20]
    for p, params in enumerate(read_pass_weights(tmp_path / "run")):
        got = pg.evaluate("([xs, p]) => xs.map(x => window.lecun1989.forward(x, p).out)",
                          [images.reshape(len(images), -1).tolist(), p])
        np.testing.assert_allclose(got, _oracle(cfg, params, images)["out"], rtol=0, atol=1e-9)
    grey = dirty_paper(render_digit(data.test_images[0][:, 6:22, 6:22]),
                       np.random.default_rng(3))
    h, w = grey.shape
    got = pg.evaluate("([g, w, h]) => Array.from(window.lecun1989.prepareGrey("
                      "Float64Array.from(g), w, h))", [grey.ravel().tolist(), w, h])
    np.testing.assert_allclose(np.array(got).reshape(28, 28), prepare(grey, 28)[0], atol=1e-6)
    pg.close()
