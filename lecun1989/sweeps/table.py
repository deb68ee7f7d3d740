"""A sweep's table: its runs grouped by config minus the seed, with statistics over the seeds.

Writes SWEEP_DIR/table.md, table.json and test_error.png (a dot per seed, a bar at the median).
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path

from lecun1989 import files, paper
from lecun1989.config import PRESETS, RunConfig
from lecun1989.errors import UserError
from lecun1989.stats import STATS, aggregate, describe
from lecun1989.sweeps.run import ERROR
from lecun1989.train import rundir
from lecun1989.train.metrics import format_metric

TABLE_MD, TABLE_JSON, PLOT = "table.md", "table.json", "test_error.png"
# (split, metric) rows of the table; split None: a top-level summary key
METRICS = (("test", "error"), ("train", "error"), ("test", "mse"), ("train", "mse"),
           ("test", "misses"), ("train", "misses"), ("test", "reject_for_1pct"),
           (None, "seconds"))
_CONFIG_KEYS = set(RunConfig().to_dict())


def load_runs(sweep_dir: str | Path) -> tuple[list[dict], dict[str, str]]:
    """Finished runs as {"dir", "config", "summary"}, and the others' folders -> state."""
    finished, others = [], {}
    root = Path(sweep_dir)
    if not root.is_dir():
        raise UserError(f"{sweep_dir}: no such sweep folder; run `lecun1989 sweep --out` first")
    for d in sorted(p for p in root.iterdir() if (p / rundir.CONFIG).is_file()):
        if (d / rundir.SUMMARY).is_file():
            config = json.loads((d / rundir.CONFIG).read_text())
            finished.append({"dir": d.name, "summary": json.loads((d / rundir.SUMMARY).read_text()),
                             "config": {k: v for k, v in config.items() if k in _CONFIG_KEYS}})
        elif (d / ERROR).is_file():
            others[d.name] = "failed: " + (d / ERROR).read_text().strip().splitlines()[-1]
        else:
            others[d.name] = "unfinished (running, or stopped: the next sweep resumes it)"
    return finished, others


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _order(value):
    if isinstance(value, Real) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, json.dumps(value))


def group_runs(runs: list[dict]) -> list[dict]:
    """Runs with the same config but the seed, in preset order; labelled by what varies."""
    groups: dict[str, dict] = {}
    for run in runs:
        config = {k: v for k, v in _flat(run["config"]).items() if k != "seed"}
        g = groups.setdefault(json.dumps(config, sort_keys=True),
                              {"config": config, "seeds": [], "dirs": [], "summaries": []})
        g["seeds"].append(run["config"]["seed"])
        g["dirs"].append(run["dir"])
        g["summaries"].append(run["summary"])
    groups = list(groups.values())
    for g in groups:  # label: the preset, and the fields that differ from its other groups
        same_preset = [h["config"] for h in groups
                       if h["config"]["preset"] == g["config"]["preset"]]
        g["varying"] = {k: v for k, v in g["config"].items()
                        if any(c.get(k) != v for c in same_preset)}
        g["label"] = " ".join([g["config"]["preset"],
                               *(f"{k}={json.dumps(v)}" for k, v in g["varying"].items())])
    presets = list(PRESETS)
    groups.sort(key=lambda g: (presets.index(p) if (p := g["config"]["preset"]) in presets
                               else len(presets), [_order(v) for v in g["varying"].values()]))
    return groups


def summarise(sweep_dir: str | Path) -> dict:
    """The table as data: a row per group with statistics of every final metric."""
    runs, others = load_runs(sweep_dir)
    rows = []
    for g in group_runs(runs):
        order = sorted(range(len(g["seeds"])), key=g["seeds"].__getitem__)
        summaries = [g["summaries"][i] for i in order]
        stats = aggregate(summaries)
        stats["seconds"] = describe(s["seconds"] for s in summaries)
        rows.append({"label": g["label"], "varying": g["varying"], "config": g["config"],
                     "seeds": [g["seeds"][i] for i in order],
                     "dirs": [g["dirs"][i] for i in order],
                     "test_error": [s["final"]["test"]["error"] for s in summaries],
                     "data": summaries[0]["data"], "engine": summaries[0]["engine"],
                     "stats": stats})
    return {"sweep_dir": str(sweep_dir), "runs": len(runs), "groups": rows,
            "not_finished": others}


def _stat(stats: dict, split: str | None, metric: str) -> dict:
    return stats[metric] if split is None else stats[split][metric]


def _fmt(metric: str, value) -> str:
    return format_metric(metric, value)


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def metric_table(table: dict, split: str | None, metric: str) -> list[str]:
    """The Markdown lines of one metric's statistics, a row per group."""
    title = metric if split is None else f"{split} {metric}"
    lines = [f"## {title}", "", "| group | " + " | ".join(STATS) + " |",
             "|---|" + "---:|" * len(STATS)]
    for r in table["groups"]:
        s = _stat(r["stats"], split, metric)
        lines.append(f"| {r['label']} | " + " | ".join(_fmt(metric, s[k]) for k in STATS) + " |")
    return lines


def markdown(table: dict) -> str:
    """The table as Markdown: the groups, then one small table per metric."""
    rows = table["groups"]
    lines = [f"# Sweep {table['sweep_dir']}", "",
             f"{table['runs']} finished runs in {len(rows)} groups (same config but the seed). "
             "sd: sample standard deviation over seeds (– for one seed).", "",
             "| group | runs | seeds | data (train/test) | passes | engine |",
             "|---|---:|---|---|---:|---|"]
    for r in rows:
        d = r["data"]
        lines.append(f"| {r['label']} | {len(r['seeds'])} | {_seeds(r['seeds'])} | "
                     f"{d['name']} ({d['train']}/{d['test']}) | "
                     f"{r['config']['train.passes']} | {r['engine']} |")
    for split, metric in METRICS:
        lines += ["", *metric_table(table, split, metric)]
    if table["not_finished"]:
        lines += ["", "## Not finished", ""]
        lines += [f"- {name}: {state}" for name, state in table["not_finished"].items()]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: str | Path) -> None:
    """Test error per group: a dot per seed, a bar at the median."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = table["groups"]
    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 1.5), 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        errors = 100 * np.array(r["test_error"])
        ax.scatter(i + np.linspace(-0.15, 0.15, len(errors)), errors, s=18, color="tab:blue",
                   alpha=0.7, label="one seed" if i == 0 else None)
        ax.hlines(np.median(errors), i - 0.3, i + 0.3, color="black", lw=2,
                  label="median" if i == 0 else None)
    if all(r["config"].get("data.name") == "usps" for r in rows):  # the paper's test set
        nc89 = 100 * paper.RESULTS["test"]["error"]
        ax.axhline(nc89, color="tab:red", ls="--", lw=1, label=f"NC89: {nc89:.1f}%")
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=25, ha="right",
                  fontsize=8)
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{Path(table['sweep_dir']).name}: test error per group", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    files.write_figure(fig, path, dpi=120)


def write_table(sweep_dir: str | Path) -> dict:
    """Write table.md, table.json and test_error.png into the sweep folder; return the table."""
    table = summarise(sweep_dir)
    root = Path(sweep_dir)
    files.write_text(root / TABLE_MD, markdown(table))
    rundir.write_json(root / TABLE_JSON, table)
    if table["groups"]:
        plot(table, root / PLOT)
    return table
