"""Run configuration: dataclasses, the named presets and `--set key=value` overrides.

Every choice the paper leaves open is one named field here, with the guess as
default and a comment saying it is a guess. Facts are cited to NC89 (LeCun et
al. 1989) or EB98 ("Efficient BackProp", 1998); see ../shared/PAPER.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lecun1989.errors import ConfigError


def _f(default, meaning: str):
    """A config field and its meaning: the one place each field is described (`lecun1989
    config` lists them)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"meaning": meaning})
    return field(default=default, metadata={"meaning": meaning})


@dataclass
class ModelConfig:
    """The network's architecture and initialisation."""

    input_size: int = _f(16, "NC89 §2: digits scaled to 16x16 (the notebook used 28x28)")
    conv: str = _f("native", "'native' (F.conv2d) or 'unfold' (the notebook's unfold/fold layer)")
    bias: str = _f("unit", "NC89 §3: one bias per unit ('unit'); 'map': one per feature map")
    table: str | list = _f("karpathy", "NC89 §3: each H2 map sees 8 of the 12 H1 maps by an "
                           "undisclosed scheme. Guess: 'karpathy' blocks; or 'balanced', 'full' "
                           "(12 of 12), or an explicit list of 12 lists")
    pad_value: float = _f(-1.0, "NC89 §3 pads the input with -1; the H1 output likewise is a "
                          "guess")
    activation: str = _f("tanh", "'tanh': A tanh(S a) (NC89 'sigmoid'); 'relu' only for "
                         "ablations")
    tanh_scale: float = _f(1.7159, "A, EB98 §4.4 (the notebook: 1.716; plain tanh: 1)")
    tanh_slope: float = _f(2 / 3, "S, EB98 §4.4 (plain tanh: 1)")
    output_activation: bool = _f(True, "NC89: output units are squashed too")
    init: str = _f("2.4/F", "NC89: U[-2.4/F, 2.4/F], F = fan-in; '2.4/sqrt(F)' is Karpathy's "
                   "reading")
    bias_init: str = _f("zeros", "not stated in NC89; 'zeros' (guess) or 'uniform' (as the "
                        "weights)")
    output_bias_init: float | None = _f(None, "null: as bias_init; Karpathy: -1 (all outputs "
                                        "start at the 'no' target)")
    dropout: float = _f(0.0, "dropout before H3: ablation ladder only")
    dtype: str = _f("float32", "'float32' or 'float64' (the notebook)")


@dataclass
class TrainConfig:
    """How the network is trained."""

    passes: int = _f(23, "NC89 §4: 23 passes through the training set")
    optimizer: str = _f("sgd", "'sgd', 'sdlm' (NC89's diagonal Newton rule) or 'adamw' "
                        "(ablation)")
    lr: float = _f(0.03, "the step size: SGD's (Karpathy's 0.03), AdamW's, and for sdlm the "
                   "global eps of eps / (mu + h), a much smaller number (paper preset: 4e-4)")
    lr_schedule: list = _f([], "[[first_pass, lr], ...]: replaces lr from that pass on")
    lr_final: float | None = _f(None, "ablations: linear decay of lr to this value over the run")
    weight_decay: float = _f(0.0, "adamw only")
    loss: str = _f("mse", "NC89 §4: mean squared error; 'cross_entropy' (ablation, softmax "
                   "outputs)")
    loss_reduction: str = _f("mean", "MSE over the 10 outputs: 'mean' (guess) or 'sum' (10 "
                             "times the loss, gradient and h: for SGD lr x 10; for SDLM sum "
                             "with mu equals mean with mu / 10 and the same eps)")
    target: float = _f(1.0, "targets +target / -target; NC89: 'in the quasi-linear range' "
                       "(guess: 1)")
    shuffle: bool = _f(False, "NC89 §4: the patterns are always presented in the same order")
    augment_shift: int = _f(0, "ablation: random translations of up to this many pixels, "
                            "below half the input size")
    # SDLM (EB98 §9.1); constants of 1989 unknown: chosen on a validation split (RESULTS.md)
    sdlm_mu: float = _f(0.02, "SDLM's damping mu in eps / (mu + h) (EB98 §9.1)")
    sdlm_samples: int = _f(500, "SDLM: patterns used to estimate h before each pass "
                           "(LeNet-5: 500); 'running': before the first pass only")
    sdlm_estimate: str = _f("pass", "SDLM's h: 'pass' re-estimated before each pass (LeNet-5) "
                            "or 'running', h <- (1 - g) h + g h_pattern before every step "
                            "(Becker & LeCun 1988), g = sdlm_decay")
    sdlm_decay: float = _f(0.01, "SDLM 'running': the weight g of each pattern's second "
                           "derivatives in the running average (not given: a guess)")
    loss_every: int = _f(100, "record the loss every this many steps")
    history_every: int = _f(1000, "record parameter histograms every this many steps")
    snapshot_every: int = _f(0, "full parameter snapshots every this many steps (0: never)")


@dataclass
class DataConfig:
    """Which digits, from where."""

    name: str = _f("auto", "'auto': usps when found, else the embedded mnist-5k; or usps, "
                   "mnist, mnist-5k, digits")
    data_dir: str | None = _f(None, "a folder with zip.train[.gz] / zip.test[.gz]")
    sample_seed: int = _f(0, "which digits the mnist sources sample (fixed, not the run seed)")
    limit_train: int = _f(0, "use only the first N training digits (0: all)")
    limit_test: int = _f(0, "use only the first N test digits (0: all)")
    validation: int = _f(0, "hold out the LAST N training digits as the test set (model "
                         "selection)")


@dataclass
class RunConfig:
    """Everything that determines a run; saved as config.json and inside every checkpoint."""

    preset: str = _f("paper", "the preset the run started from (informative)")
    seed: int = _f(0, "fixes the initial weights (and any shuffling or augmentation)")
    engine: str = _f("auto", "'auto', 'reference', 'fast' or 'lanes' (engines/__init__.py)")
    device: str = _f("auto", "where the reference engine computes: 'auto' (CUDA when torch "
                     "sees a GPU, as the original notebook's get_device()), 'cpu' or 'cuda'")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Inverse of `to_dict`; unknown keys are a ConfigError."""
        sections = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}
        kwargs = {}
        for key, value in d.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key in _names(cls):
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown config key {key!r}{_did_you_mean(key, _names(cls))};"
                                  f" valid: {sorted(_names(cls))}")
        cfg = cls(**kwargs)
        validate(cfg)
        return cfg


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def _build(cls, d: dict, section: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config section {section!r} must be an object, got {d!r}")
    unknown = set(d) - _names(cls)
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in config section {section!r}"
                          f"{_did_you_mean(first, _names(cls))}")
    return cls(**d)


# Every field whose paper value is a guess (or unknown), with what the paper does say.
# The one place these are described for users (the report lists them beside the values).
GUESSES = {
    "data.name": "NC89's 9298 Buffalo digits are not public; the USPS set (ESL zip.train/"
                 "zip.test, same 7291/2007 split, deslanted) is the closest copy",
    "model.table": "NC89 §3: each H2 map sees 8 of the 12 H1 maps, 'a scheme that will not be "
                   "described here'; guess: Karpathy's blocks",
    "model.pad_value": "NC89 §3 pads the input with -1; padding H1's output with -1 too is a "
                       "guess (Karpathy)",
    "model.tanh_scale": "NC89 names a scaled tanh without constants; A = 1.7159 from EB98 §4.4",
    "model.tanh_slope": "NC89 names a scaled tanh without constants; S = 2/3 from EB98 §4.4",
    "model.init": "NC89: U[-2.4/F, 2.4/F]; Karpathy suspects a lost square root (2.4/sqrt(F))",
    "model.bias_init": "not stated in NC89; guess: zeros",
    "model.output_bias_init": "not stated in NC89; guess: as the other biases, bias_init "
                              "(Karpathy: -1)",
    "train.target": "NC89: targets 'in the quasi-linear range'; guess: +1/-1",
    "train.optimizer": "NC89 §4: a diagonal Newton rule ('sdlm', EB98 §9.1); 'sgd' is the "
                       "reproductions' stand-in",
    "train.lr": "not given in NC89; SGD 0.03 is Karpathy's; for sdlm the global eps",
    "train.lr_schedule": "not given in NC89 (LeNet-5 lowered eps pass by pass)",
    "train.sdlm_mu": "not given in NC89; LeNet-5 and eblearn used mu = 0.02",
    "train.sdlm_samples": "not given in NC89; LeNet-5 estimated h on 500 patterns per pass",
    "train.sdlm_estimate": "NC89 cites Becker & LeCun 1988 (a running average); LeNet-5 "
                           "re-estimated h before each pass: guess 'pass'",
    "train.sdlm_decay": "not given anywhere: the running average's weight g (guess 0.01)",
    "train.loss_reduction": "NC89's MSE may be a mean or a sum over the 10 outputs; it "
                            "changes only what lr, mu and eps mean (guess: mean)",
}


# --- presets -----------------------------------------------------------------------------

def _paper() -> RunConfig:
    """Every choice as in NC89, guesses at their named defaults (../shared/PAPER.md).

    The learning rule is NC89's diagonal Gauss-Newton ("SDLM", EB98 §9.1). Its 1989
    constants are not given; mu and eps were chosen on a validation split (the last 1000
    training digits, 8 seeds, 23 passes, the grid extended past every edge; `python
    studies/fidelity.py select`, studies/results/select.json, RESULTS.md): mu = 0.02 (as
    LeNet-5's), eps = 4e-4, constant, h re-estimated before each pass on 500 patterns.
    """
    return RunConfig(preset="paper", train=TrainConfig(optimizer="sdlm", sdlm_mu=0.02,
                                                       lr=4e-4))


def _paper_sgd() -> RunConfig:
    """The paper's network and data with plain SGD in place of its learning rule; lr chosen
    on the same validation split as `paper`'s constants (RESULTS.md)."""
    cfg = _paper()
    cfg.preset = "paper-sgd"
    cfg.train.optimizer, cfg.train.lr = "sgd", 0.02  # studies/results/select.json
    return cfg


def _karpathy() -> RunConfig:
    """karpathy/lecun1989-repro: plain tanh, 2.4/sqrt(F) init, output bias -1, SGD lr 0.03."""
    return RunConfig(
        preset="karpathy",
        model=ModelConfig(tanh_scale=1.0, tanh_slope=1.0, init="2.4/sqrt(F)",
                          output_bias_init=-1.0),
        train=TrainConfig(optimizer="sgd", lr=0.03),
    )


def _notebook() -> RunConfig:
    """The original notebook: 28x28, zero padding, shared biases, full H2, 1.716 tanh,
    lr 0.1, 20 epochs, float64. Its slips are fixed: init uses fan-in (it used fan-out)
    and the patterns come in a fixed order (it shuffled)."""
    return RunConfig(
        preset="notebook",
        model=ModelConfig(input_size=28, conv="unfold", bias="map", table="full",
                          pad_value=0.0, tanh_scale=1.716, dtype="float64"),
        train=TrainConfig(lr=0.1, passes=20),
    )


# The modern ablation ladder (karpathy/lecun1989-repro's modern.py), each on top of the last.
def _modern_softmax() -> RunConfig:
    """Ladder 1: linear output layer, softmax with cross-entropy, SGD lr 0.01."""
    cfg = _karpathy()
    cfg.preset = "modern-softmax"
    cfg.model.output_activation = False
    cfg.model.output_bias_init = 0.0  # -1 only made sense for tanh outputs aiming at -1
    cfg.train.loss, cfg.train.lr = "cross_entropy", 0.01
    return cfg


def _modern_adamw() -> RunConfig:
    """Ladder 2: AdamW (torch's default weight decay 0.01), lr 3e-4 decaying to 1e-4, 46 passes."""
    cfg = _modern_softmax()
    cfg.preset = "modern-adamw"
    cfg.train.optimizer, cfg.train.lr, cfg.train.lr_final = "adamw", 3e-4, 1e-4
    cfg.train.weight_decay, cfg.train.passes = 0.01, 46
    return cfg


def _modern_augment() -> RunConfig:
    """Ladder 3: random shifts of up to 1 pixel (background-filled, not rolled), 60 passes."""
    cfg = _modern_adamw()
    cfg.preset = "modern-augment"
    cfg.train.augment_shift, cfg.train.passes = 1, 60
    return cfg


def _modern_relu_dropout() -> RunConfig:
    """Ladder 4: ReLU units and dropout 0.25 before H3, 80 passes."""
    cfg = _modern_augment()
    cfg.preset = "modern-relu-dropout"
    cfg.model.activation, cfg.model.dropout, cfg.train.passes = "relu", 0.25, 80
    return cfg


PRESETS = {"paper": _paper, "paper-sgd": _paper_sgd, "karpathy": _karpathy,
           "notebook": _notebook, "modern-softmax": _modern_softmax, "modern-adamw": _modern_adamw,
           "modern-augment": _modern_augment, "modern-relu-dropout": _modern_relu_dropout}
LADDER = ("karpathy", "modern-softmax", "modern-adamw", "modern-augment", "modern-relu-dropout")


def preset(name: str) -> RunConfig:
    """A fresh RunConfig for a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{_did_you_mean(name, PRESETS)}; choose one "
                          f"of: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    validate(cfg)
    return cfg


# --- overrides ---------------------------------------------------------------------------

def _field_index() -> dict[str, list[str]]:
    """Map each bare field name to its dotted paths (e.g. 'lr' -> ['train.lr'])."""
    index: dict[str, list[str]] = {}
    for f in fields(RunConfig):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            for g in fields(sub):
                index.setdefault(g.name, []).append(f"{f.name}.{g.name}")
        else:
            index.setdefault(f.name, []).append(f.name)
    return index


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Parse `text` to the type of the field's current value (JSON for lists and null)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "false", "1", "0", "yes", "no"}:
            return str(value).lower() in {"true", "1", "yes"}
    elif isinstance(current, int) and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
    elif isinstance(current, float) and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
    elif (current is None or isinstance(current, (str, list))) and not isinstance(value, dict):
        return value
    raise ConfigError(f"--set {key}={text}: expected a {type(current).__name__}")


def _did_you_mean(word: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _path_of(key: str, index: dict[str, list[str]]) -> str:
    """The dotted path a `--set` key names ('lr' -> 'train.lr'), or a one-line ConfigError."""
    parts = key.split(".")
    if len(parts) > 2 or not all(parts):
        raise ConfigError(f"--set {key}=...: a key is NAME or SECTION.NAME, e.g. lr or train.lr; "
                          "list them with `lecun1989 config`")
    known = sorted({path for paths in index.values() for path in paths})
    paths = [key] if key in known else index.get(key, []) if len(parts) == 1 else []
    if len(paths) > 1:
        raise ConfigError(f"--set {key}: ambiguous, use one of {', '.join(paths)}")
    if not paths:
        guess = _did_you_mean(key, known + list(index))
        raise ConfigError(f"--set {key}: unknown key{guess}; list them with `lecun1989 config`")
    return paths[0]


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply `key=value` strings (keys dotted like 'train.lr' or bare like 'lr')."""
    index = _field_index()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write it as key=value, e.g. --set train.lr=0.01")
        key, text = item.split("=", 1)
        key = key.strip()
        section, _, name = _path_of(key, index).rpartition(".")
        target = getattr(cfg, section) if section else cfg
        setattr(target, name, _parse_value(text.strip(), getattr(target, name), key))
    validate(cfg)
    return cfg


def apply_flags(cfg: RunConfig, overrides: list[str], flags: dict[str, tuple[str, Any]]
                ) -> RunConfig:
    """apply_overrides, then the command's flags {key: (flag, value)} (value None: not given).

    A flag that contradicts a `--set` of the same key is a ConfigError naming both: the flag
    no longer wins silently, and every `--set` value is validated even where a flag agrees.
    """
    index = _field_index()
    apply_overrides(cfg, overrides)
    given = {_path_of(item.split("=", 1)[0].strip(), index): item for item in overrides}
    for path, (flag, value) in flags.items():
        if value is None:
            continue
        section, _, name = path.rpartition(".")
        target = getattr(cfg, section) if section else cfg
        current = getattr(target, name)
        parsed = value if isinstance(value, str) and not isinstance(current, (bool, int, float)) \
            else _parse_value(str(value), current, path)
        if path in given and current != parsed:
            raise ConfigError(f"{flag} {value} and --set {given[path]} disagree; give one of "
                              "them")
        setattr(target, name, parsed)
    validate(cfg)
    return cfg


# --- validation --------------------------------------------------------------------------

_CHOICES = {
    ("model", "conv"): ("native", "unfold"),
    ("model", "bias"): ("unit", "map"),
    ("model", "activation"): ("tanh", "relu"),
    ("model", "init"): ("2.4/F", "2.4/sqrt(F)"),
    ("model", "bias_init"): ("zeros", "uniform"),
    ("model", "dtype"): ("float32", "float64"),
    ("model", "input_size"): (16, 28),
    ("train", "optimizer"): ("sgd", "sdlm", "adamw"),
    ("train", "loss"): ("mse", "cross_entropy"),
    ("train", "loss_reduction"): ("mean", "sum"),
    ("train", "sdlm_estimate"): ("pass", "running"),
    (None, "engine"): ("auto", "reference", "fast", "lanes"),
    (None, "device"): ("auto", "cpu", "cuda"),
}

_POSITIVE = {("train", "passes"), ("train", "lr"), ("train", "target"), ("train", "loss_every"),
             ("train", "history_every"), ("train", "sdlm_samples"), ("train", "sdlm_mu"),
             ("train", "sdlm_decay"), ("model", "tanh_scale"), ("model", "tanh_slope")}
_NON_NEGATIVE = {("train", "weight_decay"), ("train", "augment_shift"),
                 ("train", "snapshot_every"), ("data", "limit_train"), ("data", "limit_test"),
                 ("data", "validation"), ("model", "dropout")}
# numpy.random.seed (and RandomState) take seeds of 32 bits; torch takes 64. The smaller bound
# holds for every generator a run seeds.
SEED_MAX = 2**32 - 1
_SEEDS = ((None, "seed"), ("data", "sample_seed"))

# NC89 §3: 12 H1 maps feed 12 H2 maps. The named tables are built in lecun1989/model/tables.py
# (which imports these; config imports nothing from the model).
MAPS = 12
TABLE_NAMES = ("karpathy", "balanced", "full")


def check_table(spec) -> None:
    """Raise ConfigError unless spec is a name in TABLE_NAMES or 12 rows of distinct H1 maps."""
    if isinstance(spec, str):
        if spec not in TABLE_NAMES:
            guess = _did_you_mean(spec, TABLE_NAMES)
            raise ConfigError(f"model.table={spec!r} is not valid{guess}; choose one of "
                              f"{', '.join(TABLE_NAMES)} or give 12 lists of H1 map indices")
        return
    hint = "give 12 lists of the same length, each of distinct H1 maps 0..11"
    if not isinstance(spec, (list, tuple)) or len(spec) != MAPS:
        raise ConfigError(f"model.table must have {MAPS} rows (one per H2 map); {hint}")
    rows = [list(r) if isinstance(r, (list, tuple)) else None for r in spec]
    if any(r is None or not r for r in rows) or len({len(r) for r in rows}) != 1:
        raise ConfigError(f"model.table rows must be non-empty lists of one length; {hint}")
    for r in rows:
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < MAPS for i in r):
            raise ConfigError(f"model.table row {r}: entries must be integers 0..11; {hint}")
        if len(set(r)) != len(r):
            raise ConfigError(f"model.table row {r} repeats an H1 map; {hint}")


def _or(values) -> str:
    """'a, b or c'."""
    *head, last = [str(v) for v in values]
    return f"{', '.join(head)} or {last}" if head else last


def _where(section: str | None, name: str) -> str:
    return f"{section}.{name}" if section else name


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first invalid value."""
    for (section, name), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{_where(section, name)}={value!r} is not valid"
                              f"{_did_you_mean(value, allowed)}; choose {_or(allowed)}")
    for section, name in _SEEDS:
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
            raise ConfigError(f"{_where(section, name)}={value!r} must be an integer from 0 to "
                              f"{SEED_MAX} (2**32 - 1, numpy's limit for seeds)")
    for section, name in sorted(_POSITIVE | _NON_NEGATIVE):
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{section}.{name}={value!r} must be a number")
        if not math.isfinite(value) or value < 0 or ((section, name) in _POSITIVE
                                                      and value == 0):
            positive = (section, name) in _POSITIVE
            sign = "finite and positive" if positive else "finite, zero or positive"
            raise ConfigError(f"{section}.{name}={value!r} must be {sign}")
    if cfg.train.sdlm_decay > 1:
        raise ConfigError(f"train.sdlm_decay={cfg.train.sdlm_decay} must be at most 1 (the "
                          "weight of the newest pattern in the running average)")
    if cfg.train.loss_reduction == "sum" and cfg.train.loss != "mse":
        raise ConfigError("train.loss_reduction=sum applies to the MSE loss only (cross-entropy "
                          "is one number per pattern); set train.loss=mse or drop it")
    if cfg.model.dropout >= 1:
        raise ConfigError(f"model.dropout={cfg.model.dropout} must be below 1")
    obi = cfg.model.output_bias_init
    if obi is not None and (isinstance(obi, bool) or not isinstance(obi, (int, float))
                            or not math.isfinite(obi)):
        raise ConfigError(f"model.output_bias_init={obi!r} must be a number, or null to "
                          "follow model.bias_init")
    # A shift of half the side or more moves the digit's centre out of the frame: most of the
    # pattern is background fill and no longer shows its label (and 17+ crashed the shifter).
    limit = cfg.model.input_size // 2
    if cfg.train.augment_shift >= limit:
        raise ConfigError(f"train.augment_shift={cfg.train.augment_shift} must be below half the "
                          f"input size ({limit} pixels for {cfg.model.input_size}x"
                          f"{cfg.model.input_size}); a larger shift moves the digit out of the "
                          "picture")
    if cfg.train.lr_final is not None and not (
        isinstance(cfg.train.lr_final, (int, float)) and not isinstance(cfg.train.lr_final, bool)
        and math.isfinite(cfg.train.lr_final) and cfg.train.lr_final > 0
    ):
        raise ConfigError(f"train.lr_final={cfg.train.lr_final!r} must be positive or null")
    check_table(cfg.model.table)
    schedule = cfg.train.lr_schedule
    for item in schedule if isinstance(schedule, list) else [schedule]:
        ok = isinstance(item, list) and len(item) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in item)
        if not ok or item[0] < 0 or item[1] <= 0:
            raise ConfigError(f"train.lr_schedule item {item!r}: write [[first_pass, lr], ...], "
                              "e.g. [[0,5e-4],[2,2e-4]]")
    for section, name in (("data", "name"), (None, "preset")):
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if not isinstance(value, str):
            raise ConfigError(f"{_where(section, name)}={value!r} must be a name")
    if cfg.data.data_dir is not None and not isinstance(cfg.data.data_dir, str):
        raise ConfigError(f"data.data_dir={cfg.data.data_dir!r} must be a folder name or null")


# --- description (`lecun1989 config`) ------------------------------------------------------

def _allowed(section: str | None, name: str) -> str:
    """What values a field takes, from the validation tables above."""
    key = (section, name)
    if key in _CHOICES:
        return _or(_CHOICES[key])
    if key in _SEEDS:
        return f"an integer 0..{SEED_MAX}"
    if key == ("model", "table"):
        return f"{_or(TABLE_NAMES)}, or {MAPS} lists of H1 maps 0..{MAPS - 1}"
    if key == ("model", "dropout"):
        return "0 <= x < 1"
    if key == ("train", "augment_shift"):
        return "an integer 0 <= x < model.input_size / 2"
    if key == ("train", "lr_schedule"):
        return "[[first_pass, lr], ...] with lr > 0"
    if key == ("train", "lr_final"):
        return "null or > 0"
    if key in _POSITIVE:
        return "> 0"
    if key in _NON_NEGATIVE:
        return ">= 0"
    return "true or false" if name in ("output_activation", "shuffle") else "any"


def describe(cfg: RunConfig) -> list[dict]:
    """Every field of cfg: key, value, type, allowed values and meaning (from the fields)."""
    rows = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows += [{"key": f"{f.name}.{g.name}", "value": getattr(value, g.name),
                      "type": str(g.type), "allowed": _allowed(f.name, g.name),
                      "meaning": g.metadata.get("meaning", "")} for g in fields(value)]
        else:
            rows.append({"key": f.name, "value": value, "type": str(f.type),
                         "allowed": _allowed(None, f.name),
                         "meaning": f.metadata.get("meaning", "")})
    return rows
