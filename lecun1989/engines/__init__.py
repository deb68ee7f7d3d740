"""Training engines: `reference` (PyTorch eager, the oracle) and `fast` (compiled passes)."""

from __future__ import annotations

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.engines.base import Engine

ENGINES = ("reference", "fast")


def fast_unsupported(cfg: RunConfig) -> str | None:
    """Why the fast engine cannot run this config, or None when it can."""
    try:
        from lecun1989.engines import fast  # noqa: PLC0415
    except ImportError as e:  # the fast engine is optional at import time
        return f"the fast engine is unavailable ({e})"
    return fast.unsupported(cfg)


def choose_engine(cfg: RunConfig) -> tuple[str, str]:
    """(engine name, reason) for cfg.engine, resolving "auto"."""
    if cfg.engine != "auto":
        return cfg.engine, "chosen with --engine"
    reason = fast_unsupported(cfg)
    if reason is None:
        return "fast", "auto: the fast engine supports this configuration"
    return "reference", f"auto: {reason}"


def make_engine(name: str, cfg: RunConfig, params: dict[str, np.ndarray]) -> Engine:
    """An engine by name, starting from `params`."""
    if name == "fast":
        from lecun1989.engines.fast import FastEngine  # noqa: PLC0415

        reason = fast_unsupported(cfg)
        if reason is not None:
            from lecun1989.errors import ConfigError  # noqa: PLC0415

            raise ConfigError(f"--engine fast: {reason}; use --engine reference")
        return FastEngine(cfg, params)
    from lecun1989.engines.reference import ReferenceEngine  # noqa: PLC0415

    return ReferenceEngine(cfg, params)


__all__ = ["ENGINES", "Engine", "choose_engine", "make_engine"]
