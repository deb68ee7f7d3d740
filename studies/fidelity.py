"""The fidelity study: the constants of the paper's rule chosen on validation only (8 seeds a
setting), the headline on the test set once (20 seeds a preset), and every guess of
config.GUESSES against the chosen `paper`, paired on 10 seeds. RESULTS.md is written from
its output.

    python studies/fidelity.py select   --data-dir ../shared/data/usps   # validation only
    python studies/fidelity.py headline --data-dir ../shared/data/usps   # 20 seeds, test once
    python studies/fidelity.py ablate   --data-dir ../shared/data/usps   # paired, 10 seeds
    python studies/fidelity.py figures          # the pictures and the target table, from the JSON

Model selection never sees the test set: `select` and the validation half of `ablate` train on
the first 6291 training digits and score on the last 1000 (`data.validation=1000`).
Every run trains on the lanes engine (every lane equals the reference engine; a lane's
numbers do not depend on the lanes beside it, so a run is the same whichever batch it was
in) into runs/study/<stage>/<setting>/seed-<s>, an ordinary run folder with its config.json;
a finished run with the same config is reused, so a stopped stage continues where it stopped.
Results: studies/results/<stage>.json, whose rows list their seeds and every seed's numbers,
and <stage>.md. Intervals: percentile bootstrap over seeds (lecun1989.stats).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lecun1989.config import GUESSES, RunConfig, apply_overrides, preset
from lecun1989.engines import lanes
from lecun1989.engines.base import config_fields
from lecun1989.errors import UserError
from lecun1989.stats import paired, summarize
from lecun1989.train.loop import fit_runs, load_run_data

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RUNS = HERE.parent / "runs" / "study"
VALIDATION = 1000  # the last 1000 of the 7291 training digits
SELECT_SEEDS = tuple(range(8))
HEADLINE_SEEDS = tuple(range(20))
ABLATE_SEEDS = tuple(range(10))
BATCH = 32  # models per lanes engine: two blocks of 16 lanes, one on each core
METRICS = ("error", "misses", "mse", "mse_half", "reject_for_1pct")
# The ladders the SDLM and SGD searches climb: a setting at the edge of the tried range
# that wins extends the range one rung (until a rung beyond the ladder would be needed).
MU_LADDER = (2e-7, 2e-6, 2e-5, 2e-4, 2e-3, 2e-2, 2e-1, 2.0)
RATIO_LADDER = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # eps / mu: the step where h << mu
SGD_LADDER = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
# LeNet-5's eps schedule (LeCun et al. 1998): 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3,
# 5e-5 for 4, then 1e-5; as factors of the first value.
LENET5_SHAPE = ((0, 1.0), (2, 0.4), (5, 0.2), (8, 0.1), (12, 0.02))


@dataclass(frozen=True)
class Setting:
    """One configuration of the study: a preset and overrides (`--set` syntax)."""

    name: str
    preset: str
    overrides: tuple[str, ...] = ()


# --- training (reusing finished runs) ------------------------------------------------------

def _config(s: Setting, seed: int, validation: bool, data_dir: str) -> RunConfig:
    extra = [f"data.validation={VALIDATION}"] if validation else []
    return apply_overrides(preset(s.preset), ["data.name=usps", f"data.data_dir={data_dir}",
                                              "engine=lanes", f"seed={seed}", *extra,
                                              *s.overrides])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".=" else "-" for c in text)


def _finished(out: Path, cfg: RunConfig) -> bool:
    """A run folder holds this config's finished run (its summary.json is written last)."""
    try:
        record, want = json.loads((out / "config.json").read_text()), json.loads(
            json.dumps(cfg.to_dict()))
        same = {k: record.get(k) for k in want} == want
        return same and record.get("engine_resolved") == "lanes" and (
            out / "summary.json").exists()
    except (OSError, ValueError):
        return False


def _together(cfg: RunConfig) -> str:
    """Runs with the same key train in one lanes engine: all but the lanes' PER_MODEL."""
    return json.dumps({k: v for k, v in config_fields(cfg).items()
                       if k not in lanes.PER_MODEL}, sort_keys=True, default=str)


def train(stage: str, settings: list[Setting], seeds, validation: bool, data_dir: str,
          cache: dict) -> list[dict]:
    """Train every setting on every seed (reusing finished runs); one row per setting."""
    split = "validation" if validation else "test"
    jobs = [(s, seed, _config(s, seed, validation, data_dir),
             RUNS / stage / split / _slug(s.name) / f"seed-{seed}")
            for s in settings for seed in seeds]
    groups: dict[str, list] = {}
    for job in jobs:
        if not _finished(job[3], job[2]):
            groups.setdefault(_together(job[2]), []).append(job)
    batches = [g[i:i + BATCH] for g in groups.values() for i in range(0, len(g), BATCH)]
    for n, batch in enumerate(batches, 1):
        cfg = batch[0][2]
        key = cfg.data.validation
        if key not in cache:
            cache[key] = load_run_data(cfg)
        t0 = time.perf_counter()
        fit_runs([j[2] for j in batch], cache[key], [j[3] for j in batch], engine="lanes",
                 overwrite=True, progress=False, log=lambda s: None)
        names = sorted({j[0].name for j in batch})
        print(f"  {stage}/{split} batch {n}/{len(batches)}: {len(batch)} runs "
              f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}) "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for s in settings:
        outs = [j[3] for j in jobs if j[0] is s]
        summaries = [json.loads((o / "summary.json").read_text()) for o in outs]
        rows.append(_row(s, list(seeds), split, summaries, outs))
    return rows


def _row(s: Setting, seeds: list, split: str, summaries: list[dict], outs: list) -> dict:
    per_seed = [{"seed": seed, "train": {m: sm["final"]["train"][m] for m in METRICS},
                 split: {m: sm["final"]["test"][m] for m in METRICS},
                 "curve": [p["test"]["error"] for p in sm["passes"]]}
                for seed, sm in zip(seeds, summaries, strict=True)]
    stats = {part: {m: summarize([r[part][m] for r in per_seed]) for m in METRICS}
             for part in ("train", split)}
    return {"name": s.name, "preset": s.preset, "overrides": list(s.overrides),
            "split": split, "seeds": seeds, "engine": summaries[0]["engine"],
            "runs": str(Path(outs[0]).parent.relative_to(HERE.parent)),
            "stats": stats, "per_seed": per_seed}


def _score(row: dict) -> tuple:
    """The selection rule: the lowest median validation error; ties: the lower mean
    validation MSE."""
    st = row["stats"]["validation"]
    return st["error"]["median"], st["mse"]["mean"]


# --- select: constants on validation only ---------------------------------------------------

def _sdlm(mu: float, ratio: float, extra: tuple = (), tag: str = "") -> Setting:
    eps = float(f"{mu * ratio:.6g}")
    return Setting(f"sdlm mu={mu:g} eps={eps:g}{tag}", "paper",
                   ("train.optimizer=sdlm", f"train.sdlm_mu={mu:g}", f"train.lr={eps:g}",
                    *extra))


def _sgd(lr: float) -> Setting:
    return Setting(f"sgd lr={lr:g}", "paper", ("train.optimizer=sgd", f"train.lr={lr:g}"))


def _grow(rng: list[int], at: int, ladder: tuple) -> bool:
    """Extend the index range `rng` [lo, hi] one rung past the edge where `at` sits."""
    if at == rng[0] and rng[0] > 0:
        rng[0] -= 1
        return True
    if at == rng[1] and rng[1] < len(ladder) - 1:
        rng[1] += 1
        return True
    return False


def select(data_dir: str, cache: dict) -> dict:
    log = []
    # plain SGD: lr on a ladder, extended past whichever edge wins
    lo_hi, sgd_rows = [SGD_LADDER.index(0.01), SGD_LADDER.index(0.1)], {}  # by ladder index
    while True:
        todo = [i for i in range(lo_hi[0], lo_hi[1] + 1) if i not in sgd_rows]
        rows = train("select", [_sgd(SGD_LADDER[i]) for i in todo], SELECT_SEEDS, True,
                     data_dir, cache)
        sgd_rows.update(zip(todo, rows, strict=True))
        best = min(sgd_rows, key=lambda i: _score(sgd_rows[i]))
        if not _grow(lo_hi, best, SGD_LADDER):
            break
        log.append(f"sgd: best lr {SGD_LADDER[best]:g} at the edge: extended")
    # SDLM: mu x eps/mu, each extended past whichever edge its best sits on
    mus, ratios = [MU_LADDER.index(2e-4), MU_LADDER.index(2e-2)], [
        RATIO_LADDER.index(0.01), RATIO_LADDER.index(0.1)]
    grid: dict[tuple, dict] = {}
    while True:
        todo = [(m, r) for m in range(mus[0], mus[1] + 1) for r in range(ratios[0], ratios[1] + 1)
                if (m, r) not in grid]
        rows = train("select", [_sdlm(MU_LADDER[m], RATIO_LADDER[r]) for m, r in todo],
                     SELECT_SEEDS, True, data_dir, cache)
        grid.update(zip(todo, rows, strict=True))
        bm, br = min(grid, key=lambda k: _score(grid[k]))
        grown = _grow(mus, bm, MU_LADDER) | _grow(ratios, br, RATIO_LADDER)
        if not grown:
            break
        log.append(f"sdlm: best mu {MU_LADDER[bm]:g}, eps/mu {RATIO_LADDER[br]:g} at an edge: "
                   "extended")
    mu, ratio = MU_LADDER[bm], RATIO_LADDER[br]
    eps = float(f"{mu * ratio:.6g}")
    # half-rungs around the best, then the rule's open variants at the best constants
    refine = ([_sdlm(mu * f, ratio) for f in (1 / 3, 3)]
              + [_sdlm(mu, ratio * f) for f in (0.5, 2)])

    def lenet5(f):  # LeNet-5's decreasing eps, from f times the best constant eps
        return json.dumps([[p, float(f"{eps * k * f:.6g}")] for p, k in LENET5_SHAPE])

    lenet = [_sdlm(mu, ratio, (f"train.lr_schedule={lenet5(f)}",), f" lenet5-schedule x{f:g}")
             for f in (1, 3)]
    samples = [_sdlm(mu, ratio, (f"train.sdlm_samples={n}",), f" samples={n}")
               for n in (100, 2000, 6291)]
    running = [_sdlm(mu, ratio, ("train.sdlm_estimate=running", f"train.sdlm_decay={g}"),
                     f" running g={g}") for g in (0.001, 0.01, 0.1)]
    summed = [_sdlm(mu * 10, ratio / 10, ("train.loss_reduction=sum",), " loss=sum"),
              _sdlm(mu, ratio, ("train.loss_reduction=sum",), " loss=sum")]
    variants = refine + lenet + samples + running + summed
    variant_rows = train("select", variants, SELECT_SEEDS, True, data_dir, cache)
    sdlm_rows = list(grid.values()) + variant_rows
    best_sdlm = min(sdlm_rows, key=_score)
    best_sgd = sgd_rows[best]
    return {"rule": "lowest median validation error over the seeds; ties: lower mean "
                    "validation MSE",
            "seeds": list(SELECT_SEEDS), "log": log,
            "sgd": [sgd_rows[k] for k in sorted(sgd_rows)], "sdlm": sdlm_rows,
            "chosen": {"paper": best_sdlm["overrides"], "paper-sgd": best_sgd["overrides"]},
            "best_sdlm": best_sdlm["name"], "best_sgd": best_sgd["name"]}


def _fail(message: str, status: int = 2):
    """One line on stderr and the exit status (2: the user's to fix, as the CLI's)."""
    print(message, file=sys.stderr)
    raise SystemExit(status)


def _chosen(stage: str) -> dict:
    """select.json's choices, checked against the presets (a preset that was not updated to
    the choice would make the headline a claim about other constants)."""
    chosen = json.loads((RESULTS / "select.json").read_text())["chosen"]
    for name, overrides in chosen.items():
        want = config_fields(apply_overrides(preset(name), overrides))
        have = config_fields(preset(name))
        diff = sorted(k for k in want if want[k] != have[k])
        if diff:
            _fail(f"fidelity.py {stage}: preset {name!r} differs from select.json's choice "
                  f"in {diff}; update lecun1989/config.py to {overrides}")
    return chosen


# --- headline: the test set, once ------------------------------------------------------------

def headline(data_dir: str, cache: dict) -> dict:
    _chosen("headline")
    settings = [Setting("paper", "paper"), Setting("paper-sgd", "paper-sgd"),
                Setting("karpathy", "karpathy")]
    return {"seeds": list(HEADLINE_SEEDS),
            "rows": train("headline", settings, HEADLINE_SEEDS, False, data_dir, cache)}


# --- ablate: every guess against the chosen paper preset, paired ---------------------------

def guess_arms(chosen: dict) -> list[tuple[str, Setting]]:
    """(the GUESSES key, one change from `paper`) for every guess that has an alternative."""
    p = preset("paper").train
    sgd_lr = [o for o in chosen["paper-sgd"] if o.startswith("train.lr=")]
    one = [
        ("model.table", "table=balanced"), ("model.table", "table=full"),
        ("model.pad_value", "pad_value=0"),
        ("model.tanh_scale", "tanh_scale=1"), ("model.tanh_slope", "tanh_slope=1"),
        ("model.init", "init=2.4/sqrt(F)"), ("model.bias_init", "bias_init=uniform"),
        ("model.output_bias_init", "output_bias_init=-1"),
        ("train.target", "target=0.8"), ("train.target", "target=1.2"),
        ("train.lr", f"lr={p.lr / 3:.6g}"), ("train.lr", f"lr={p.lr * 3:.6g}"),
        ("train.lr_schedule", "lr_schedule=" + json.dumps(
            [[q, float(f"{p.lr * k:.6g}")] for q, k in LENET5_SHAPE])),
        ("train.sdlm_mu", f"sdlm_mu={p.sdlm_mu / 10:.6g}"),
        ("train.sdlm_mu", f"sdlm_mu={p.sdlm_mu * 10:.6g}"),
        ("train.sdlm_samples", "sdlm_samples=100"), ("train.sdlm_samples", "sdlm_samples=2000"),
        ("train.loss_reduction", "loss_reduction=sum"),
    ]
    arms = [(key, Setting(o, "paper", (o,))) for key, o in one]
    arms.append(("train.optimizer", Setting("optimizer=sgd " + sgd_lr[0].removeprefix("train."),
                                            "paper", ("train.optimizer=sgd", *sgd_lr))))
    arms.append(("model.tanh_scale", Setting("plain tanh (scale=1, slope=1)", "paper",
                                             ("tanh_scale=1", "tanh_slope=1"))))
    running = p.sdlm_estimate == "running"
    arms.append(("train.sdlm_estimate", Setting(
        f"sdlm_estimate={'pass' if running else 'running'}", "paper",
        (f"sdlm_estimate={'pass' if running else 'running'}",))))
    arms.append(("train.sdlm_decay", Setting("sdlm_estimate=running sdlm_decay=0.1", "paper",
                                             ("sdlm_estimate=running", "sdlm_decay=0.1"))))
    return arms


NOT_ABLATED = {"data.name": "the paper's 9298 Buffalo digits are not public: there is no "
                            "other copy of the paper's data to set against USPS"}


def ablate(data_dir: str, cache: dict) -> dict:
    chosen = _chosen("ablate")
    arms = guess_arms(chosen)
    base = Setting("paper (as chosen)", "paper")
    out = {"seeds": list(ABLATE_SEEDS), "not_ablated": NOT_ABLATED,
           "missing": sorted(set(GUESSES) - {k for k, _ in arms} - set(NOT_ABLATED))}
    for validation in (True, False):
        rows = train("ablate", [base] + [s for _, s in arms], ABLATE_SEEDS, validation,
                     data_dir, cache)
        split = "validation" if validation else "test"
        base_row, effects = rows[0], []
        for (key, _), row in zip(arms, rows[1:], strict=True):
            effects.append({"guess": key, "name": row["name"], "overrides": row["overrides"],
                            **{m: paired([r[split][m] for r in row["per_seed"]],
                                         [r[split][m] for r in base_row["per_seed"]])
                               for m in ("error", "reject_for_1pct", "mse")},
                            "train_error": paired([r["train"]["error"] for r in row["per_seed"]],
                                                  [r["train"]["error"]
                                                   for r in base_row["per_seed"]])})
        out[split] = {"base": base_row, "arms": rows[1:], "effects": effects}
    return out


# --- tables -----------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _cell(st: dict, pct: bool = True) -> str:
    f = _pct if pct else (lambda v: f"{v:.2e}")
    ci = st.get("median_ci")
    inner = f" [{f(ci[0])}, {f(ci[1])}]" if ci else ""
    return f"{f(st['median'])}{inner}"


def _spread(st: dict, pct: bool = True) -> str:
    f = _pct if pct else (lambda v: f"{v:.2e}")
    sd = "" if st["sd"] is None else f" ± {f(st['sd'])}"
    return f"{f(st['mean'])}{sd} ({f(st['min'])}-{f(st['max'])})"


def table(rows: list[dict]) -> list[str]:
    """Median [95% interval] per row, percent; MSE without the factor 1/2."""
    split = rows[0]["split"]
    out = [f"| setting | train error % | {split} error % | {split} MSE | {split} MSE/2 | "
           f"{split} reject for 1% | seeds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["stats"]
        out.append(f"| {r['name']} | {_cell(st['train']['error'])} | "
                   f"{_cell(st[split]['error'])} | {_cell(st[split]['mse'], False)} | "
                   f"{_cell(st[split]['mse_half'], False)} | "
                   f"{_cell(st[split]['reject_for_1pct'])} | "
                   f"{r['seeds'][0]}-{r['seeds'][-1]} |")
    return out


def headline_table(rows: list[dict]) -> list[str]:
    out = ["| preset | metric | mean ± sd (min-max) | median [95% interval] |",
           "|---|---|---|---|"]
    for r in rows:
        for split, metric, pct in (("train", "error", True), ("test", "error", True),
                                   ("train", "mse", False), ("train", "mse_half", False),
                                   ("test", "mse", False), ("test", "mse_half", False),
                                   ("test", "reject_for_1pct", True)):
            st = r["stats"][split][metric]
            unit = " %" if pct else ""
            out.append(f"| {r['name']} | {split} {metric}{unit} | {_spread(st, pct)} | "
                       f"{_cell(st, pct)} |")
    return out


def effects_table(effects: list[dict]) -> list[str]:
    out = ["| guess | change | error, points (paired 95%) | reject for 1%, points | "
           "seeds up / down | matters? |", "|---|---|---|---|---|---|"]
    for e in effects:
        err, rej = e["error"], e["reject_for_1pct"]
        matters = "yes" if err["ci"][0] > 0 or err["ci"][1] < 0 else "no"
        out.append(f"| {e['guess']} | {e['name']} | {100 * err['mean']:+.2f} "
                   f"[{100 * err['ci'][0]:+.2f}, {100 * err['ci'][1]:+.2f}] | "
                   f"{100 * rej['mean']:+.2f} [{100 * rej['ci'][0]:+.2f}, "
                   f"{100 * rej['ci'][1]:+.2f}] | {err['higher']} / {err['lower']} | "
                   f"{matters} |")
    return out


def markdown(stage: str, result: dict) -> str:
    if stage == "select":
        parts = [f"Rule: {result['rule']}. Seeds {result['seeds'][0]}-{result['seeds'][-1]}; "
                 "the columns named validation are the last 1000 training digits.", "",
                 f"Chosen: SDLM **{result['best_sdlm']}**, SGD **{result['best_sgd']}**.", "",
                 *[f"- {line}" for line in result["log"]], "", "Plain SGD:", "",
                 *table(result["sgd"]), "", "SDLM:", "", *table(result["sdlm"])]
    elif stage == "headline":
        parts = headline_table(result["rows"])
    else:
        parts = [f"Seeds {result['seeds'][0]}-{result['seeds'][-1]}, the same for both arms; "
                 "effect = arm - paper, per seed, then the mean and its bootstrap 95% "
                 "interval.", ""]
        for split in ("validation", "test"):
            parts += [f"{split}:", "", *effects_table(result[split]["effects"]), ""]
        parts += [f"Not ablated: {k}: {v}" for k, v in result["not_ablated"].items()]
    return "\n".join(parts) + "\n"


# --- figures ------------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's 95% interval for a share of k in n (the share of seeds that reach a target)."""
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, mid - half)), float(min(1.0, mid + half))


def targets() -> dict:
    """The issue's targets against the headline: the median of 20 seeds with its interval,
    and how many single seeds reach each target (the paper reports one run)."""
    from lecun1989 import paper

    rows = json.loads((RESULTS / "headline.json").read_text())["rows"]
    # the issue's targets: NC89's test error and reject rate; train error 0.3% (NC89: 0.14%)
    goals = {"test error": ("test", "error", paper.RESULTS["test"]["error"]),
             "train error": ("train", "error", 0.003),
             "reject for 1%": ("test", "reject_for_1pct",
                               paper.RESULTS["test"]["reject_for_1pct"])}
    out = {}
    for r in rows:
        out[r["name"]] = {}
        for goal, (split, metric, limit) in goals.items():
            values = [s[split][metric] for s in r["per_seed"]]
            k = sum(v <= limit + 1e-12 for v in values)
            st = r["stats"][split][metric]
            out[r["name"]][goal] = {"paper": limit, "median": st["median"],
                                    "median_ci": st["median_ci"], "reached": st["median"] <= limit,
                                    "seeds_reaching": k, "seeds": len(values),
                                    "share_ci": list(wilson(k, len(values)))}
        both = [s["test"]["error"] <= goals["test error"][2] + 1e-12
                and s["train"]["error"] <= goals["train error"][2] + 1e-12
                for s in r["per_seed"]]
        out[r["name"]]["seeds reaching all three"] = sum(  # (of the seeds)
            b and s["test"]["reject_for_1pct"] <= goals["reject for 1%"][2] + 1e-12
            for b, s in zip(both, r["per_seed"], strict=True))
    return out


def preset_differences() -> dict:
    """`paper` against the other presets, paired on the same seeds (same initial weights where
    the models agree): per metric, the mean difference with its 95% interval."""
    rows = {r["name"]: r for r in json.loads((RESULTS / "headline.json").read_text())["rows"]}
    base = rows["paper"]["per_seed"]
    return {f"paper - {name}": {f"{split} {metric}": paired(
        [s[split][metric] for s in base], [s[split][metric] for s in rows[name]["per_seed"]])
        for split, metric in (("test", "error"), ("train", "error"),
                              ("test", "reject_for_1pct"))}
        for name in rows if name != "paper"}


def differences_table(d: dict) -> list[str]:
    out = ["| difference (20 paired seeds) | metric | mean, points [95% interval] | seeds "
           "lower / higher |", "|---|---|---|---|"]
    for name, metrics in d.items():
        for metric, p in metrics.items():
            out.append(f"| {name} | {metric} | {100 * p['mean']:+.2f} [{100 * p['ci'][0]:+.2f}, "
                       f"{100 * p['ci'][1]:+.2f}] | {p['lower']} / {p['higher']} |")
    return out


def targets_table(t: dict) -> list[str]:
    out = ["| preset | target, % | median of the seeds, % [95% interval] | reached? | seeds "
           "reaching it (share, 95% interval) |", "|---|---|---|---|---|"]
    for name, goals in t.items():
        for goal, g in goals.items():
            if not isinstance(g, dict):
                continue
            out.append(f"| {name} | {goal} <= {_pct(g['paper'])} | "
                       f"{_pct(g['median'])} [{_pct(g['median_ci'][0])}, "
                       f"{_pct(g['median_ci'][1])}] | {'yes' if g['reached'] else 'no'} | "
                       f"{g['seeds_reaching']} of {g['seeds']} ({_pct(g['share_ci'][0])}-"
                       f"{_pct(g['share_ci'][1])}%) |")
    return out


def figures() -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lecun1989 import paper

    made = []
    rows = json.loads((RESULTS / "headline.json").read_text())["rows"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=130)
    for r, color in zip(rows, ("C0", "C1", "C2"), strict=False):
        curves = 100 * np.array([s["curve"] for s in r["per_seed"]])
        x = np.arange(1, curves.shape[1] + 1)
        ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.12, lw=0)
        ax.fill_between(x, *np.percentile(curves, [25, 75], axis=0), color=color, alpha=0.3,
                        lw=0)
        ax.plot(x, np.median(curves, 0), color=color,
                label=f"{r['name']}: median of {len(curves)} seeds")
    ax.axhline(100 * paper.RESULTS["test"]["error"], color="k", ls="--", lw=1,
               label="NC89: 5.0% after 23 passes")
    ax.set(xlabel="pass through the 7291 training digits", ylabel="USPS test error (%)",
           ylim=(3.5, 12), title="Test error per pass: median, quartiles and range over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    made.append(RESULTS / "test_error_per_pass.png")
    fig.savefig(made[-1])
    plt.close(fig)

    ab = json.loads((RESULTS / "ablate.json").read_text())
    effects = {s: ab[s]["effects"] for s in ("validation", "test")}
    names = [("lr_schedule: LeNet-5's decay" if e["name"].startswith("lr_schedule") else
              e["name"]) for e in effects["test"]]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.9), dpi=130)
    y = np.arange(len(names))
    for (split, es), dy, color in zip(effects.items(), (-0.17, 0.17), ("C0", "C3"),
                                      strict=True):
        mean = np.array([100 * e["error"]["mean"] for e in es])
        lo = np.array([100 * e["error"]["ci"][0] for e in es])
        hi = np.array([100 * e["error"]["ci"][1] for e in es])
        ax.errorbar(mean, y + dy, xerr=[mean - lo, hi - mean], fmt="o", ms=4, color=color,
                    capsize=2, label=f"{split} ({len(ab['seeds'])} paired seeds)")
    # a few arms leave the stable range (effects of 10+ points): clip the axis, write them out
    span = (-1.0, 2.5)
    for yy in y:
        far = [100 * effects[split][yy]["error"]["mean"] for split in effects]
        if max(far) > span[1]:
            ax.annotate(f"off scale: +{far[0]:.1f} / +{far[1]:.1f}", (span[1], yy),
                        xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=7, color="0.3")
    ax.set_xlim(*span)
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlabel="error rate minus paper's, per seed (points; mean, 95% interval)")
    ax.set_title("Each guess changed alone, against the chosen `paper`", pad=28)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    made.append(RESULTS / "guess_effects.png")
    fig.savefig(made[-1])
    plt.close(fig)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("select", "headline", "ablate", "figures"))
    ap.add_argument("--data-dir", help="folder with zip.train.gz, zip.test.gz")
    args = ap.parse_args()
    if args.stage == "figures":
        t = {"targets": targets(), "differences": preset_differences()}
        lines = [*targets_table(t["targets"]), "", *differences_table(t["differences"])]
        (RESULTS / "targets.json").write_text(json.dumps(t, indent=1) + "\n")
        (RESULTS / "targets.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        for path in figures():
            print(path)
        return
    if not args.data_dir:
        ap.error(f"{args.stage} needs --data-dir (the USPS folder, e.g. ../shared/data/usps)")
    t0 = time.perf_counter()
    cache: dict = {}
    try:
        result = {"select": select, "headline": headline, "ablate": ablate}[args.stage](
            args.data_dir, cache)
    except UserError as e:  # a wrong folder, a refused config: one line, as the CLI says it
        _fail(f"fidelity.py {args.stage}: {e}")
    except KeyboardInterrupt:  # finished runs stay in runs/study/ and are reused next time
        _fail(f"fidelity.py {args.stage}: interrupted; run the same command again to "
              "continue (finished runs are reused)", status=130)
    result["command"] = f"python studies/fidelity.py {args.stage} --data-dir {args.data_dir}"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.stage}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.stage}.md").write_text(markdown(args.stage, result))
    print(markdown(args.stage, result))


if __name__ == "__main__":
    main()
