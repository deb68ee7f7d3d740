"""The fidelity study: choose the constants on a validation split, then hold 5 seeds per
configuration against the paper's table (RESULTS.md is written from its output).

    python studies/fidelity.py --data-dir ../shared/data/usps select   # validation only
    python studies/fidelity.py --data-dir ../shared/data/usps final    # 5 seeds, test set once
    python studies/fidelity.py --data-dir ../shared/data/usps ablate   # guesses, validation
                                                                       # first, then one test
    python studies/fidelity.py --data-dir . figure                     # the per-pass plot

Model selection never sees the test set: `select` and the first half of `ablate` train on
the first 6291 training digits and score on the last 1000 (`data.validation=1000`).
Results land in studies/results/<stage>.json and .md; run folders in runs/study/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lecun1989.config import apply_overrides, preset
from lecun1989.stats import aggregate
from lecun1989.train.loop import fit, load_run_data

HERE = Path(__file__).parent
VALIDATION = 1000  # the last 1000 of the 7291 training digits
SELECT_SEEDS = (0, 1)
FINAL_SEEDS = (0, 1, 2, 3, 4)
# LeNet-5's eps schedule (LeCun et al. 1998): 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3,
# 5e-5 for 4, then 1e-5; as factors of the first value.
LENET5_SHAPE = [[0, 1.0], [2, 0.4], [5, 0.2], [8, 0.1], [12, 0.02]]


def sgd_grid() -> dict[str, list[str]]:
    """Plain SGD step sizes for the paper preset (NC89's stand-in used by reproductions)."""
    return {f"sgd lr={lr:g}": ["optimizer=sgd", f"lr={lr}"] for lr in (0.01, 0.02, 0.03, 0.05,
                                                                       0.1)}


def sdlm_grid() -> dict[str, list[str]]:
    """SDLM: damping mu x global eps (as eps/mu, the step where h << mu) x schedule shape."""
    grid = {}
    for mu in (0.002, 0.02, 0.2):
        for ratio in (0.03, 0.1, 0.3):
            eps = mu * ratio
            grid[f"sdlm mu={mu:g} eps={eps:.2g} const"] = [
                "optimizer=sdlm", f"sdlm_mu={mu}", f"lr={eps}"]
            schedule = [[p, eps * f] for p, f in LENET5_SHAPE]
            grid[f"sdlm mu={mu:g} eps={eps:.2g} lenet5"] = [
                "optimizer=sdlm", f"sdlm_mu={mu}", f"lr={eps}",
                f"lr_schedule={json.dumps(schedule)}"]
    return grid


def guess_grid() -> dict[str, list[str]]:
    """One change at a time from the paper preset's guesses (PAPER.md's open questions)."""
    return {"paper (as chosen)": [], "table=balanced": ["table=balanced"],
            "table=full": ["table=full"], "init=2.4/sqrt(F)": ["init=2.4/sqrt(F)"],
            "pad_value=0": ["pad_value=0"], "bias_init=uniform": ["bias_init=uniform"],
            "bias=map": ["bias=map"], "target=0.8": ["target=0.8"],
            "plain tanh": ["tanh_scale=1", "tanh_slope=1"]}


def run_group(name: str, base: str, overrides: list[str], seeds, data_dir: str,
              validation: bool, cache: dict) -> dict:
    """Train one configuration for several seeds; its aggregate and per-seed finals."""
    extra = [f"data.validation={VALIDATION}"] if validation else []
    cfg = apply_overrides(preset(base), ["data.name=usps", f"data.data_dir={data_dir}",
                                         "engine=auto", *extra, *overrides])
    key = (cfg.data.validation,)
    if key not in cache:
        cache[key] = load_run_data(cfg)
    tag = "val" if validation else "test"
    slug = "".join(c if c.isalnum() else "-" for c in f"{base}-{name}-{tag}")
    t0 = time.perf_counter()
    runs = fit(cfg, cache[key], HERE.parent / "runs/study" / slug, seeds=list(seeds),
               overwrite=True, progress=False, log=lambda s: None)
    summaries = [r.summary for r in runs]
    agg = aggregate(summaries)
    median_seed = int(np.argsort([s["final"]["test"]["error"] for s in summaries])[
        len(summaries) // 2])
    print(f"{name:40s} {tag}: error median {agg['test']['error']['median']:.2%} "
          f"(train {agg['train']['error']['median']:.2%})  {time.perf_counter() - t0:.0f}s",
          flush=True)
    return {"name": name, "preset": base, "overrides": overrides, "seeds": list(seeds),
            "split": "validation (last 1000 training digits)" if validation else "test",
            "aggregate": agg, "finals": [s["final"] for s in summaries],
            "median_seed_curve": [p["test"]["error"] for p in summaries[median_seed]["passes"]],
            "median_seed": seeds[median_seed], "engine": summaries[0]["engine"]}


def best(groups: list[dict]) -> dict:
    """Lowest median validation error; ties broken by median validation MSE."""
    return min(groups, key=lambda g: (g["aggregate"]["test"]["error"]["median"],
                                      g["aggregate"]["test"]["mse"]["median"]))


def select(data_dir: str, cache: dict) -> dict:
    sgd = [run_group(n, "paper", o, SELECT_SEEDS, data_dir, True, cache)
           for n, o in sgd_grid().items()]
    sdlm = [run_group(n, "paper", o, SELECT_SEEDS, data_dir, True, cache)
            for n, o in sdlm_grid().items()]
    return {"sgd": sgd, "sdlm": sdlm, "best_sgd": best(sgd)["name"],
            "best_sdlm": best(sdlm)["name"]}


def final(data_dir: str, cache: dict) -> dict:
    """5 seeds each on all 7291 digits, test set reported once."""
    groups = [("paper (SDLM)", "paper", []), ("paper (plain SGD)", "paper-sgd", []),
              ("karpathy", "karpathy", [])]
    return {"groups": [run_group(n, p, o, FINAL_SEEDS, data_dir, False, cache)
                       for n, p, o in groups]}


def ablate(data_dir: str, cache: dict) -> dict:
    val = [run_group(n, "paper", o, SELECT_SEEDS, data_dir, True, cache)
           for n, o in guess_grid().items()]
    test = [run_group(n, "paper", o, SELECT_SEEDS, data_dir, False, cache)
            for n, o in guess_grid().items()]
    return {"validation": val, "test": test}


def _row(g: dict) -> str:
    a = g["aggregate"]

    def cell(split, key, pct=True):
        s = a[split][key]
        fmt = (lambda v: f"{v:.2%}") if pct else (lambda v: f"{v:.2e}")
        sd = "" if s["sd"] is None else f" ± {fmt(s['sd'])}"
        return f"{fmt(s['mean'])}{sd} [{fmt(s['min'])}, {fmt(s['max'])}]"

    misses = a["test"]["misses"]
    return (f"| {g['name']} | {cell('train', 'error')} | {cell('test', 'error')} | "
            f"{misses['median']:.0f} | {cell('train', 'mse', False)} | "
            f"{cell('test', 'mse', False)} | {cell('test', 'reject_for_1pct')} |")


HEADER = ("| configuration | train error | test error | test misses (median) | train MSE | "
          "test MSE | reject for 1% |\n|---|---|---|---|---|---|---|")


def markdown(stage: str, result: dict) -> str:
    """Tables of mean ± sd [min, max] per group."""
    if stage == "select":
        parts = [f"best SGD: {result['best_sgd']}; best SDLM: {result['best_sdlm']}",
                 "(the 'test' columns are the validation split here)", HEADER]
        parts += [_row(g) for g in result["sgd"] + result["sdlm"]]
    elif stage == "final":
        parts = [HEADER] + [_row(g) for g in result["groups"]]
        parts += ["", "test error per pass, median seed:"]
        parts += [f"- {g['name']} (seed {g['median_seed']}): "
                  + ", ".join(f"{e:.2%}" for e in g["median_seed_curve"])
                  for g in result["groups"]]
    else:
        parts = ["validation:", HEADER] + [_row(g) for g in result["validation"]]
        parts += ["", "test (reported once, after the validation table was fixed):", HEADER]
        parts += [_row(g) for g in result["test"]]
    return "\n".join(parts) + "\n"


def figure(out: Path) -> Path:
    """Test error per pass of each configuration's median seed, beside the paper's 5.0%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lecun1989 import paper

    groups = json.loads((out / "final.json").read_text())["groups"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for g in groups:
        curve = g["median_seed_curve"]
        ax.plot(range(1, len(curve) + 1), [100 * e for e in curve], marker=".",
                label=f"{g['name']} (seed {g['median_seed']})")
    ax.axhline(100 * paper.RESULTS["test"]["error"], color="k", ls="--", lw=1,
               label="NC89: 5.0% after 23 passes")
    ax.set(xlabel="pass", ylabel="test error (%)", ylim=(4, 12),
           title="USPS test error per pass, median of 5 seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "test_error_per_pass.png"
    fig.savefig(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("select", "final", "ablate", "figure"))
    ap.add_argument("--data-dir", required=True, help="folder with zip.train.gz, zip.test.gz")
    args = ap.parse_args()
    if args.stage == "figure":
        print(figure(HERE / "results"))
        return
    cache: dict = {}
    result = {"select": select, "final": final, "ablate": ablate}[args.stage](
        args.data_dir, cache)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.stage}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{args.stage}.md").write_text(markdown(args.stage, result))
    print(markdown(args.stage, result))


if __name__ == "__main__":
    main()
