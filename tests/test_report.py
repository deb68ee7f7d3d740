"""The report: report.md and a self-contained report.html, checked in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lecun1989 import paper
from lecun1989.analysis import plots
from lecun1989.analysis.report import write_report
from lecun1989.cli.main import main
from lecun1989.config import GUESSES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const tables = [...document.querySelectorAll("table")];
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    widths: images.map(i => i.naturalWidth),
    tables: tables.length,
    rows: tables.map(t => t.querySelectorAll("tbody tr").length),
    tableHeights: tables.map(t => t.getBoundingClientRect().height),
  }));
});
</script>"""


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory):
    """`lecun1989 report` of the trained run, written into a copy of its folder."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(trained_run.dir, run_dir)
    assert main(["report", str(run_dir)]) == 0
    return run_dir


def test_report_files_and_pictures(report):
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    md = (report / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == sorted(f"plots/{name}.png" for name in plots.PICTURES)
    assert all((report / path).is_file() for path in linked)


def test_report_holds_the_runs_numbers_beside_the_papers(report, trained_run):
    md = (report / "report.md").read_text()
    final = trained_run.run.summary["final"]
    row = next(line for line in md.splitlines() if line.startswith("| test error |"))
    assert f"{paper.RESULTS['test']['error']:.2%}" in row and f"{final['test']['error']:.2%}" in row
    row = next(line for line in md.splitlines() if line.startswith("| test reject for 1%"))
    assert f"{final['test']['reject_for_1pct']:.1%}" in row and "12.1%" in row
    assert "| parameters | 9,760 | 9,760 |" in md  # the model's count beside NC89's
    for description in GUESSES.values():  # every guess is named, from config.GUESSES
        assert description.replace("|", "\\|") in md
    assert "| train.optimizer | sgd | sdlm |" in md  # a value that differs from the paper preset
    assert "| train.lr | 0.1 | 6e-05 |" in md
    assert "sklearn.datasets.load_digits" in md  # the data's provenance
    versions = json.loads((report / "config.json").read_text())["versions"]
    assert f"| torch | {versions['torch']} |" in md


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(plots.PICTURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    assert html.escape(GUESSES["model.table"]) in page


def _render(page: Path) -> dict:
    """Open the page in headless Chromium; return what the inline check script found."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
             "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="([^"]*)"', done.stdout)
    assert found, f"chromium printed no check result: {done.stderr[-500:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                             "chromium; .ci/run installs it)")
def test_html_renders_in_chromium_with_every_image_loaded(report, tmp_path):
    page = tmp_path / "report.html"
    shutil.copy(report / "report.html", page)
    check = _render(page)
    assert check["images"] == len(plots.PICTURES)
    assert check["loaded"] == check["images"], check["widths"]
    assert min(check["widths"]) >= 600
    assert check["tables"] >= 5 and min(check["rows"]) >= 2
    assert min(check["tableHeights"]) > 20  # laid out, not collapsed


def test_report_of_several_runs_gives_the_spread(trained_run, tmp_path):
    """Two copies of one run: sd 0, mean = median = min = max = the run's value."""
    runs = [tmp_path / "seed-a", tmp_path / "seed-b"]
    for run_dir in runs:
        shutil.copytree(trained_run.dir, run_dir, ignore=shutil.ignore_patterns("plots"))
    md_path, html_path = write_report(runs)
    assert md_path.parent == tmp_path / "report" and html_path.is_file()
    md = md_path.read_text()
    error = f"{trained_run.run.summary['final']['test']['error']:.2%}"
    row = next(line for line in md.splitlines() if line.startswith("| test error |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["test error", "5.00%", error, "0.00%", error, error, error]
    assert "| mean | sd | median | min | max |" in md
    assert (tmp_path / "report" / "plots" / "spread.png").is_file()
    assert md.count("| seed-") == 2  # one row per run


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_every_guess_names_a_config_field():
    from lecun1989.analysis.report import _flat
    from lecun1989.config import preset

    fields = _flat(preset("paper").to_dict())
    assert set(GUESSES) <= set(fields)
