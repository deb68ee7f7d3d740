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
    visible: tables.map(t => t.checkVisibility()),
    details: document.querySelectorAll("details").length,
    open: document.querySelectorAll("details[open]").length,
    featureMapsWidth: images.filter(i => i.alt.startsWith("One test digit"))
      .map(i => i.getBoundingClientRect().width)[0],
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
    assert sorted(linked) == sorted([*(f"plots/{name}.png" for name in plots.PICTURES),
                                     *(f"plots/{name}.gif" for name in plots.ANIMATIONS)])
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
    assert "| train.lr | 0.1 | 0.0004 |" in md
    assert "sklearn.datasets.load_digits" in md  # the data's provenance
    versions = json.loads((report / "config.json").read_text())["versions"]
    assert f"| torch | {versions['torch']} |" in md


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(plots.PICTURES) + len(plots.ANIMATIONS)
    assert sum(s.startswith("data:image/png;base64,") for s in sources) == len(plots.PICTURES)
    assert sum(s.startswith("data:image/gif;base64,") for s in sources) == len(plots.ANIMATIONS)
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
             "--window-size=1280,900",  # a laptop screen
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
    assert check["images"] == len(plots.PICTURES) + len(plots.ANIMATIONS)
    assert check["loaded"] == check["images"], check["widths"]
    assert sum(w >= 600 for w in check["widths"]) == len(plots.PICTURES)  # and the GIF
    assert check["tables"] >= 5 and min(check["rows"]) >= 2
    assert check["details"] == 3 and check["open"] == 0  # provenance etc. folded
    assert check["visible"][:2] == [True, True]  # the results and the model's counts
    assert not any(check["visible"][2:])  # provenance, configuration, versions: folded
    assert check["featureMapsWidth"] >= 1000  # the feature maps large enough to read


def test_report_reads_results_verdict_pictures_then_folded_details(report, trained_run):
    md = (report / "report.md").read_text()
    order = [md.index(x) for x in ("## Results against the paper", "**Verdict:**",
                                   "## Pictures", "## Model", "<details><summary>Data",
                                   "<details><summary>Configuration",
                                   "<details><summary>Timing")]
    assert order == sorted(order)
    assert md.index("| field | value |") > md.index("<details><summary>Data")
    error = trained_run.run.summary["final"]["test"]["error"]
    verdict = next(line for line in md.splitlines() if line.startswith("**Verdict:**"))
    assert f"test error is {error:.2%}" in verdict
    assert f"{abs(error - paper.RESULTS['test']['error']) * 100:.2f} points" in verdict
    link = re.search(r"\]\(([^)#]+)#([^)]+)\)", verdict)
    target = (report / link[1]).resolve()  # the link works from the report's folder
    assert target.name == "RESULTS.md" and target.is_file()
    headings = [re.sub(r"[^a-z0-9 -]", "", h[3:].lower()).replace(" ", "-")
                for h in target.read_text().splitlines() if h.startswith("## ")]
    assert link[2] in headings  # GitHub's anchor of the multi-seed section


def test_report_has_no_python_reprs_and_writes_numbers_as_a_reader_would(report, trained_run):
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for text in (md, page):
        assert "None" not in text and "[{" not in text and "{'" not in text
        assert "True" not in text and "False" not in text
    assert "| model.tanh_slope | 2/3 |" in md
    assert re.search(r"\| files\[1\]\.sha256 \| [0-9a-f]{64} \|", md) is None  # digits: no files
    for split in ("train", "test"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {split} misses |"))
        misses = trained_run.run.summary["final"][split]["misses"]
        assert row.split("|")[3].strip() == f"{misses:,.0f}"
    assert "mean over 20 patterns" in md  # the loss caption, from train.loss_every


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
    assert (f"over 2 runs the mean test error is {error} (from {error} to {error}) (on "
            "digits, not the paper's USPS digits)") in md


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_every_guess_names_a_config_field():
    from lecun1989.analysis.report import _flat
    from lecun1989.config import preset

    fields = _flat(preset("paper").to_dict())
    assert set(GUESSES) <= set(fields)


def test_the_link_to_results_names_a_heading_that_exists():
    """The report's link into RESULTS.md ends in an anchor GitHub makes from a heading."""
    import re

    from lecun1989.analysis.report import RESULTS_MD, SEEDS_SECTION

    headings = [line.lstrip("#").strip() for line in RESULTS_MD.read_text().splitlines()
                if line.startswith("#")]
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    assert SEEDS_SECTION in slugs
