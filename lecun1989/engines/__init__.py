"""Training engines, each a module that declares what it computes (engines/base.py):

    reference   PyTorch eager, autograd: the oracle; every configuration
    fast        compiled whole passes (Numba), one model per core at a time
    lanes       compiled, K models in lockstep in SIMD lanes (blocks of 16): many seeds or
                settings at once

`choose_engine` resolves `engine="auto"` from the declarations, `make_engine` builds one.
A new engine is a module with NAME, SUPPORTS, PER_MODEL, RULES and a class, plus one line in
ENGINES (the preferred first).
"""

from __future__ import annotations

from importlib import import_module

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.engines.base import Engine, ModelView, unsupported
from lecun1989.errors import ConfigError

# name -> (module, class); `auto` takes the first that supports a configuration: for one
# model the fast engine, else the lanes (a block of 16 lanes with one live still runs ~15x
# the reference's speed: SDLM with dropout, the running estimate), else the reference; for
# MANY_MODELS models or more, lanes first (16 lanes cost about what 3-4 models do on the fast
# engine: BENCHMARKS.md).
ENGINES = {
    "fast": ("lecun1989.engines.fast", "FastEngine"),
    "reference": ("lecun1989.engines.reference", "ReferenceEngine"),
    "lanes": ("lecun1989.engines.lanes", "LanesEngine"),
}
SINGLE = ("fast", "lanes", "reference")
MANY = ("lanes", "fast", "reference")
MANY_MODELS = 4


def why_not(name: str, cfgs: list[RunConfig]) -> str | None:
    """Why engine `name` cannot train `cfgs` together (one line), or None when it can."""
    try:
        module = import_module(ENGINES[name][0])
    except ImportError as e:  # a compiled engine's library missing: the others still run
        return f"the {name} engine is unavailable ({e})"
    return unsupported(module, cfgs)


def choose_engine(cfgs: RunConfig | list[RunConfig]) -> tuple[str, str]:
    """(engine name, reason) for the models `cfgs` (their `engine` field), resolving "auto";
    a named engine that cannot train them is a ConfigError naming why."""
    cfgs = [cfgs] if isinstance(cfgs, RunConfig) else list(cfgs)
    wanted = cfgs[0].engine
    if wanted != "auto":
        reason = why_not(wanted, cfgs)
        if reason is not None:
            raise ConfigError(f"--engine {wanted}: {reason}; use --engine auto")
        return wanted, "chosen with --engine"
    reasons = []
    for name in MANY if len(cfgs) >= MANY_MODELS else SINGLE:
        reason = why_not(name, cfgs)
        if reason is None:
            because = f"; {'; '.join(reasons)}" if reasons else ""
            return name, f"auto: the {name} engine supports this configuration{because}"
        reasons.append(reason)
    raise ConfigError(f"no engine can train this configuration: {'; '.join(reasons)}")


def device_of(name: str, cfg: RunConfig) -> str:
    """Where engine `name` computes for cfg: 'cpu', or 'cuda' (the reference, on a GPU)."""
    if name == "reference":
        from lecun1989.engines.reference import resolve_device

        return resolve_device(cfg)
    return "cpu"


def make_engine(name: str, cfgs: list[RunConfig], params: list[dict[str, np.ndarray]]) -> Engine:
    """Engine `name` training the models `cfgs` from `params` (one parameter set each)."""
    reason = why_not(name, cfgs)
    if reason is not None:
        raise ConfigError(f"--engine {name}: {reason}; use --engine auto")
    module, cls = ENGINES[name]
    return getattr(import_module(module), cls)(cfgs, params)


__all__ = ["ENGINES", "Engine", "ModelView", "choose_engine", "device_of", "make_engine",
           "why_not"]
