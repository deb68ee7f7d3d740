"""What every training engine provides, and how it declares what it can compute.

An engine trains K >= 1 models side by side on the same patterns in the same order (NC89's
fixed order): one model is simply K = 1. It owns the weights and optimizer state while
training; the shared driver (train/loop.py) does passes, evaluation, checkpoints and files.
Engines exchange parameters as numpy arrays keyed by `model.PARAM_NAMES`, start from the same
`init_params`, and must produce the same numbers (tests hold them to the reference engine).

Each engine module declares, as an allow-list, what it computes:

    SUPPORTS   every config field (dotted, e.g. "train.optimizer") -> the values it computes:
               a tuple of values, `Only(predicate, "what it allows")`, or ANY (any value
               config.validate accepts). A field missing from SUPPORTS is refused, so a field
               added to the config is refused by every engine until someone declares it.
    PER_MODEL  the fields that may differ between the K models of one engine ("seed" always).
    RULES      (predicate over a config, "what it refuses") for combinations of values.

`unsupported(module, cfgs)` turns the declaration into the one-line reason `auto` prints and
`--engine NAME` fails with; tests/test_engine_support.py walks every value of every field
with a fixed set of choices against every engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Protocol

import numpy as np

from lecun1989.config import RunConfig


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()  # any value the config accepts


@dataclass(frozen=True)
class Only:
    """The values of a field for which `allows(value)` holds, described in `what`."""

    allows: Callable[[Any], bool]
    what: str


def config_fields(cfg: RunConfig | None = None) -> dict[str, Any]:
    """Every field of a RunConfig by dotted name ("train.lr"), with cfg's values."""
    cfg = cfg if cfg is not None else RunConfig()
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out.update({f"{f.name}.{g.name}": getattr(value, g.name) for g in fields(value)})
        else:
            out[f.name] = value
    return out


def unsupported(engine, cfgs: Sequence[RunConfig]) -> str | None:
    """Why `engine` (a module or class with SUPPORTS, PER_MODEL, RULES and NAME) cannot train
    the models `cfgs` together, in one line; None when it can."""
    name = engine.NAME
    first = config_fields(cfgs[0])
    for cfg in cfgs:
        values = config_fields(cfg)
        for key, value in values.items():
            allowed = engine.SUPPORTS.get(key)
            if allowed is None:
                return f"the {name} engine does not declare config field {key}"
            if allowed is ANY:
                continue
            ok = allowed.allows(value) if isinstance(allowed, Only) else value in allowed
            if not ok:
                what = allowed.what if isinstance(allowed, Only) else ", ".join(map(str, allowed))
                return f"the {name} engine does not support {key}={value!r} (it computes {what})"
        for refuses, what in engine.RULES:
            if refuses(cfg):
                return f"the {name} engine does not support {what}"
        for key, value in values.items():
            if value != first[key] and key not in engine.PER_MODEL:
                return (f"the models of one {name} engine may differ only in "
                        f"{', '.join(sorted(engine.PER_MODEL))}, not in {key}")
    if len({c.seed for c in cfgs}) > 1 and any(c.train.shuffle or c.train.augment_shift
                                              for c in cfgs):
        # An engine takes one array of patterns: with shuffle or shifts, the seed picks them.
        return (f"the {name} engine trains models side by side on the same patterns; with "
                "train.shuffle or train.augment_shift each seed sees others: train each seed "
                "in its own engine")
    return None


class Engine(Protocol):
    """K models trained together. Every method's arrays carry the models on a leading axis."""

    name: str

    def __init__(self, cfgs: list[RunConfig], params: list[dict[str, np.ndarray]]): ...

    def warm_up(self, images: np.ndarray, log) -> None:
        """Compile what needs compiling before training starts (log says so if it takes long):
        compile time is not training time."""

    def begin_pass(self, pass_index: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Called before each pass (SDLM re-estimates its second derivatives here)."""

    def train_steps(self, images: np.ndarray, labels: np.ndarray, start: int, stop: int,
                    lr: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """One update per pattern images[start:stop], in order, for every model.
        lr: (K,) each model's step size; keep: the models' dropout masks (K, N, 192) from
        train.loop.dropout_keep, or None. Returns the losses (K, stop - start)."""

    def predict(self, images: np.ndarray, models: Sequence[int] | None = None) -> np.ndarray:
        """Outputs (len(models), N, 10), float64; `models`: a subset (default: all), in order."""

    def params(self, models: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
        """A copy of each model's parameters."""

    def optimizer_state(self, models: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
        """Each model's optimizer state (e.g. SDLM's second-derivative estimates)."""

    def load_optimizer_state(self, states: list[dict[str, np.ndarray]]) -> None:
        """Restore what `optimizer_state` returned, one state per model."""


class ModelView:
    """Model k of an engine on its own: what reads one model (callbacks, evaluation)."""

    def __init__(self, engine: Engine, index: int):
        self.engine, self.index, self.name = engine, index, engine.name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.engine.predict(images, [self.index])[0]

    def params(self) -> dict[str, np.ndarray]:
        return self.engine.params([self.index])[0]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.engine.optimizer_state([self.index])[0]


def model_indices(models: Sequence[int] | None, k: int) -> list[int]:
    """`models` as a list of indices below k (default: all k)."""
    return list(range(k)) if models is None else [int(m) for m in models]
