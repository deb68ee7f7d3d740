"""lecun1989: LeCun et al. 1989, the first back-propagated convolutional network, reproduced.

    from lecun1989 import preset, load_run_data, fit
    cfg = preset("paper")
    run = fit(cfg, load_run_data(cfg), out="runs/paper")

The names below are imported when first used (PEP 562): `import lecun1989.cli.main` stays
cheap, so the command line handles Ctrl-C before torch is imported.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_WHERE = {  # name -> the module that defines it
    "ModelConfig": "lecun1989.config", "RunConfig": "lecun1989.config",
    "TrainConfig": "lecun1989.config", "apply_overrides": "lecun1989.config",
    "preset": "lecun1989.config", "UserError": "lecun1989.errors",
    "Net1989": "lecun1989.model", "count": "lecun1989.model",
    "evaluate_outputs": "lecun1989.train", "fit": "lecun1989.train",
    "load_run_data": "lecun1989.train",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'lecun1989' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
