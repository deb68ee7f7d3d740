"""One report per run (or per set of runs, e.g. seeds): report.md and a self-contained report.html.

    md, html = write_report(["runs/a", "runs/b"], out="runs/report")

The report is built once as a list of blocks, then rendered twice: Markdown with the
pictures beside it, HTML with the pictures embedded as base64 data URIs.
"""

from __future__ import annotations

import base64
import html
import os
import re
import statistics
import time
from fractions import Fraction
from pathlib import Path

from lecun1989 import files, paper
from lecun1989.analysis import plots, timeline
from lecun1989.config import GUESSES, preset
from lecun1989.errors import UserError
from lecun1989.train.metrics import METRIC_FORMATS, format_metric
from lecun1989.train.runs import run_folders

CAPTIONS = {
    "digits": "The data as the network sees it.",
    "loss": "The training loss: each thin point is the squared error of one pattern, mean over "
            "{every} patterns (train.loss_every); the thick line its rolling mean.",
    "metrics": "Train and test MSE and error after every pass; dashed: the paper's final values.",
    "params": "Every parameter tensor's distribution over training (fixed-size histograms); "
              "the 10 output biases as one line per digit.",
    "feature_maps": "One test digit through the network: its 12 H1 and 12 H2 feature maps, "
                    "H3's 30 units and the 10 outputs (greys: black +, white -).",
    "learning": "Learning over time: H1's kernels and the same digit's H1 maps after a few "
                "passes.",
    "kernels_by_pass": "H1's 12 kernels pass by pass (animated; red: positive weights, blue: "
                       "negative).",
    "kernels": "The learned 5x5 kernels of H1 and H2; grey cells: connections the table omits.",
    "misclassified": "The test digits the network gets wrong.",
    "confusion": "Which digits are taken for which.",
    "reject": "Error on the digits kept as the least confident are rejected (NC89 §5).",
    "spread": "Error per pass of every run.",
    "overlay": "Every run's loss and error per pass, overlaid.",
}
# (label, split, metric, format): the rows of the paper-versus-run table (NC89 §5)
RESULT_ROWS = tuple((label, split, metric, METRIC_FORMATS[metric]) for label, split, metric in (
    ("train error", "train", "error"),
    ("train misses", "train", "misses"),
    ("train MSE", "train", "mse"),
    ("test error", "test", "error"),
    ("test misses", "test", "misses"),
    ("test MSE", "test", "mse"),
    ("test reject for 1% error", "test", "reject_for_1pct"),
))

RESULTS_MD = Path(__file__).resolve().parents[2] / "RESULTS.md"  # beside the package
SEEDS_SECTION = "the-headline-20-seeds-per-preset-on-the-test-set-once"


def _fmt(fmt: str, value) -> str:
    return "n/a" if value is None else fmt.format(value)


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}, "c": [{"d": 2}]} -> {"a.b": 1, "c[1].d": 2}: one row per value."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v, 1):
                out.update(_flat(x, f"{prefix}{k}[{i}]."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _number(value: float) -> str:
    """A number as a reader writes it: 2/3 for 0.666..., 0.1 for 0.1, 1,000 for 1000."""
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    fraction = Fraction(value).limit_denominator(12)  # a repeating decimal, e.g. 2/3
    if len(repr(value)) > 12 and fraction.denominator > 1 and abs(float(fraction) - value) < 1e-12:
        return f"{fraction.numerator}/{fraction.denominator}"
    return f"{value:g}"


def _short(value, limit: int = 160) -> str:
    """A value for a table cell, with no Python repr: none, yes/no, 2/3, lists as a, b, c."""
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list | tuple):
        if len(value) > 12 and not all(isinstance(x, list | tuple) for x in value):
            return f"{len(value)} values, kept in config.json"
        sep = "; " if any(isinstance(x, list | tuple) for x in value) else ", "
        return sep.join(_short(x, limit) for x in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v, limit)}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the blocks --------------------------------------------------------------------------

def _data_blocks(view: plots.RunView) -> list:
    manifest = view.config.get("data_manifest", {})
    note = f" The data were not loaded again: {view.missing['data']}" \
        if "data" in view.missing else ""
    note += "".join(f" Warning: {w}." for w in view.warnings)
    return [("h2", "Data"),
            ("p", f"Source `{view.cfg.data.name}`. Its provenance, as recorded in the run's "
                  f"config.json (data_manifest).{note}"),
            ("table", ["field", "value"],
             [[k, _short(v)] for k, v in _flat(manifest).items()])]


def _config_blocks(views: list[plots.RunView]) -> list:
    cfg = views[0].cfg
    reference = _flat(preset("paper").to_dict())
    rows = []
    for key, value in _flat(cfg.to_dict()).items():
        paper_value = _short(reference.get(key)) if reference.get(key) != value else ""
        rows.append([key, _short(value), paper_value, GUESSES.get(key, "")])
    blocks = [("h2", "Configuration"),
              ("p", f"Preset `{cfg.preset}`. Every field of the run's configuration, the paper "
                    "preset's value where this run differs, and every choice the paper leaves "
                    "open (a guess) with what the paper does say.")]
    differing = sorted({k for v in views[1:] for k, x in _flat(v.cfg.to_dict()).items()
                        if _flat(cfg.to_dict()).get(k) != x})
    if differing:
        blocks.append(("p", f"Note: the runs differ in {', '.join(differing)}; the table "
                            "shows the first run's configuration."))
    blocks.append(("table", ["field", "value", "paper preset (if different)",
                             "the paper says / guess"], rows))
    return blocks


def _model_blocks(view: plots.RunView) -> list:
    from lecun1989.model import Net1989, count

    counts = count(Net1989(view.cfg.model))
    ref = {"units": paper.UNITS, "connections": paper.CONNECTIONS,
           "parameters": paper.PARAMETERS}
    rows = [[k, f"{v:,}", f"{ref[k]:,}" if k in ref else "not given"] for k, v in counts.items()]
    return [("h2", "Model"),
            ("p", "Units (input included), connections (biases included, as NC89 counts them), "
                  "free parameters and multiply-accumulates of one forward pass."),
            ("table", ["count", "this model", "paper (NC89 §3)"], rows)]


def _result_value(summary: dict, split: str, key: str):
    return summary.get("final", {}).get(split, {}).get(key)


def _results_blocks(views: list[plots.RunView]) -> list:
    finished = [v for v in views if v.summary]
    blocks = [("h2", "Results against the paper"),
              ("p", "The paper's numbers are for its own data after 23 passes (NC89 §5). "
                    f"{views[0].summary.get('mse_convention', '')}. Whether the paper's MSE "
                    "includes a factor 1/2 is unknown.")]
    if not finished:
        return blocks + [("p", "No run has finished: no summary.json.")]
    if len(finished) == 1:
        s = finished[0].summary
        rows = [[label, _fmt(fmt, paper.RESULTS[split].get(key)),
                 _fmt(fmt, _result_value(s, split, key))] for label, split, key, fmt in RESULT_ROWS]
        data = s["data"]["name"]
        return blocks + [("table", ["", "paper (NC89)", f"this run ({data})"], rows)]
    rows = []
    for label, split, key, fmt in RESULT_ROWS:
        values = [_result_value(v.summary, split, key) for v in finished]
        values = [x for x in values if x is not None]
        sd = statistics.stdev(values) if len(values) > 1 else None
        rows.append([label, _fmt(fmt, paper.RESULTS[split].get(key)),
                     _fmt(fmt, statistics.mean(values)), _fmt(fmt, sd),
                     _fmt(fmt, statistics.median(values)), _fmt(fmt, min(values)),
                     _fmt(fmt, max(values))])
    runs = [[v.dir.name, str(v.cfg.seed), v.summary.get("engine", "?"),
             format_metric("error", _result_value(v.summary, "train", "error")),
             format_metric("error", _result_value(v.summary, "test", "error")),
             format_metric("mse", _result_value(v.summary, "test", "mse")),
             format_metric("reject_for_1pct", _result_value(v.summary, "test", "reject_for_1pct")),
             format_metric("seconds", v.summary.get("seconds"))] for v in finished]
    blocks += [("p", f"Spread over {len(finished)} finished runs (sd: sample standard "
                     "deviation)."),
               ("table", ["", "paper (NC89)", "mean", "sd", "median", "min", "max"], rows),
               ("table", ["run", "seed", "engine", "train error", "test error", "test MSE",
                          "reject for 1%", "training s"], runs)]
    if len(finished) < len(views):
        blocks.append(("p", f"{len(views) - len(finished)} run(s) did not finish and are left "
                            "out of the spread."))
    return blocks


def _results_link(out: Path) -> str:
    """A Markdown link to RESULTS.md's multi-seed figures (relative to the report's folder),
    or its name where this copy of lecun1989 has no RESULTS.md beside it (an installed one)."""
    if not RESULTS_MD.is_file():
        return "RESULTS.md (section The headline: 20 seeds) of the lecun1989 repository"
    rel = Path(os.path.relpath(RESULTS_MD, out.resolve())).as_posix()
    return f"[the multi-seed figures of RESULTS.md]({rel}#{SEEDS_SECTION})"


def _verdict(views: list[plots.RunView], out: Path) -> list:
    """One sentence: where the run's test error and reject rate stand against the paper."""
    finished = [v for v in views if v.summary]
    if not finished:
        return []
    error = statistics.mean(_result_value(v.summary, "test", "error") for v in finished)
    rejects = [_result_value(v.summary, "test", "reject_for_1pct") for v in finished]
    paper_error = paper.RESULTS["test"]["error"]
    paper_reject = paper.RESULTS["test"]["reject_for_1pct"]
    gap = (error - paper_error) * 100
    side = "above" if gap > 0 else "below"
    data = finished[0].summary.get("data", {}).get("name", "")
    other = "" if data == "usps" else f" (on {data}, not the paper's USPS digits)"
    reject = ""
    if None not in rejects:
        reject = (f", and {statistics.mean(rejects):.1%} of the test digits rejected to reach 1% "
                  f"error against the paper's {paper_reject:.1%}")
    if len(finished) == 1:
        head = f"this run's test error is {error:.2%}{other}"
        tail = ("one seed alone moves the test error by several tenths of a point, so hold it "
                f"against {_results_link(out)}")
    else:
        errors = [_result_value(v.summary, "test", "error") for v in finished]
        head = (f"over {len(finished)} runs the mean test error is {error:.2%} (from "
                f"{min(errors):.2%} to {max(errors):.2%}){other}")
        tail = f"compare with {_results_link(out)}"
    return [("p", f"**Verdict:** {head}, {abs(gap):.2f} points {side} the paper's "
                  f"{paper_error:.1%}{reject}; {tail}.")]


def _timing_blocks(view: plots.RunView) -> list:
    config, metrics = view.config, view.metrics
    rows = [["engine", f"{config.get('engine_resolved', '?')} ({config.get('engine_reason', '')})"],
            ["device", str(config.get('device_resolved', 'cpu'))]]
    if metrics:
        seconds, steps = metrics[-1]["seconds"], metrics[-1]["step"]
        rows += [["passes finished", str(len(metrics))],
                 ["training time", f"{seconds:.1f} s (evaluation excluded)"],
                 ["speed", f"{steps / max(seconds, 1e-9):,.0f} patterns/s"]]
    versions = [[k, str(v)] for k, v in config.get("versions", {}).items()]
    return [("h2", "Timing and versions"), ("table", ["", ""], rows),
            ("table", ["library", "version"], versions)]


def build(views: list[plots.RunView], pictures: dict[str, Path], skipped: dict,
          out: Path | None = None) -> list:
    """The report as blocks: ("h1"|"h2"|"p", text), ("table", header, rows), ("img", path,
    caption), ("details", summary, blocks). Results first, then the verdict, the pictures,
    the model; provenance, configuration and versions folded away."""
    first = views[0]
    out = out or first.dir
    names = ", ".join(v.dir.name for v in views)
    blocks = [("h1", f"LeCun et al. 1989, reproduced: {names}"),
              ("p", f"Written {time.strftime('%Y-%m-%d %H:%M')} by lecun1989 "
                    f"{first.config.get('versions', {}).get('lecun1989', '?')}. Paper: LeCun "
                    "et al., Backpropagation Applied to Handwritten Zip Code Recognition, "
                    "Neural Computation 1(4), 1989 (NC89).")]
    blocks += _results_blocks(views) + _verdict(views, out)
    blocks.append(("h2", "Pictures" + (f" (of {first.dir.name})" if len(views) > 1 else "")))
    every = first.cfg.train.loss_every
    for name, path in pictures.items():
        blocks.append(("img", path, CAPTIONS.get(name, name).format(every=f"{every:,}")))
    for name, why in skipped.items():
        blocks.append(("p", f"Picture `{name}` left out: {why}"))
    blocks += _model_blocks(first)
    blocks.append(("details", "Data provenance", _data_blocks(first)[1:]))
    blocks.append(("details", "Configuration (every field, the paper preset's value, the "
                              "guesses)", _config_blocks(views)[1:]))
    blocks.append(("details", "Timing and versions", _timing_blocks(first)[1:]))
    return blocks


# --- rendering ---------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list, base: Path) -> str:
    """Markdown; pictures are linked relative to `base` (the report's folder)."""
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "details":  # GitHub renders Markdown inside <details> after a blank line
            lines += [f"<details><summary>{html.escape(block[1])}</summary>", "",
                      to_markdown(block[2], base), "</details>", ""]
        elif kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            rel = Path(os.path.relpath(block[1], base)).as_posix()
            lines += [f"![{block[2]}]({rel})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}figure{margin:1.5em 0}img{max-width:100%;height:auto}
figcaption{color:#555;font-style:italic}code{background:#f4f4f4;padding:0 .2em}
details{margin:1em 0}summary{cursor:pointer;font-weight:600;font-size:1.1em}"""
IMAGE_TYPES = {".png": "image/png", ".gif": "image/gif"}


def _inline(text: str) -> str:
    """Escape, then render `code`, **bold** and [links](target)."""
    parts = html.escape(text).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                          lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', part))
    return "".join(out)


def _html_body(blocks: list) -> list[str]:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            path = Path(block[1])
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            caption = html.escape(block[2])
            body.append(f'<figure><img src="data:{IMAGE_TYPES[path.suffix]};base64,{data}" '
                        f'alt="{caption}"><figcaption>{caption}</figcaption></figure>')
        elif kind == "details":
            body += [f"<details><summary>{html.escape(block[1])}</summary>",
                     *_html_body(block[2]), "</details>"]
    return body


def to_html(blocks: list) -> str:
    """A self-contained HTML page: pictures embedded as base64 data URIs."""
    title = next((b[1] for b in blocks if b[0] == "h1"), "report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(_html_body(blocks)) + "\n</body></html>\n")


def default_out(run_dirs: list[Path]) -> Path:
    """One run: its own folder; several: a `report` folder beside them."""
    if len(run_dirs) == 1:
        return run_dirs[0]
    return Path(os.path.commonpath([d.resolve() for d in run_dirs])) / "report"


def write_report(run_dirs, out: str | os.PathLike | None = None, digit: int | None = None,
                 index: int | None = None) -> tuple[Path, Path]:
    """Write report.md, report.html and the pictures (out/plots/); returns the two reports.
    A folder of several seeds stands for its seeds' run folders (its report goes beside its
    seeds.json); a folder named twice is refused (the spread over one run is no spread)."""
    given = [Path(d) for d in run_dirs]
    if not given:
        raise UserError("report: name at least one run folder")
    run_dirs = run_folders(given)
    seen: dict[Path, Path] = {}
    for d in run_dirs:
        if d.resolve() in seen:
            raise UserError(f"report: {d} is named twice (as {seen[d.resolve()]}); name each "
                            "run once")
        seen[d.resolve()] = d
    if out is None and len(given) == 1 and len(run_dirs) > 1:
        out = given[0]
    out = Path(out) if out else default_out(run_dirs)
    views = [plots.load_run(d, with_data=(i == 0)) for i, d in enumerate(run_dirs)]
    files.make_folder(out)
    pictures, skipped = plots.plot_run(run_dirs[0], out / "plots", digit, view=views[0],
                                       index=index)
    if len(views) > 1 and all(v.metrics for v in views):
        figure = plots.spread_plot({v.dir.name: v.metrics for v in views})
        overlay = timeline.overlay_run_dirs(run_dirs)
        pictures = {"spread": plots.save(figure, out / "plots" / "spread.png"),
                    "overlay": plots.save(overlay, out / "plots" / "overlay.png"), **pictures}
    blocks = build(views, pictures, skipped, out)
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, to_markdown(blocks, out)), (page, to_html(blocks))):
        files.write_text(path, text)
    return md, page
