"""lecun1989: LeCun et al. 1989, the first back-propagated convolutional network, reproduced.

    from lecun1989 import preset, load_run_data, fit
    cfg = preset("paper")
    run = fit(cfg, load_run_data(cfg), out="runs/paper")
"""

from lecun1989.config import ModelConfig, RunConfig, TrainConfig, apply_overrides, preset
from lecun1989.errors import UserError
from lecun1989.model import Net1989, count
from lecun1989.train import evaluate_outputs, fit, load_run_data

__version__ = "0.1.0"
__all__ = ["ModelConfig", "Net1989", "RunConfig", "TrainConfig", "UserError", "apply_overrides",
           "count", "evaluate_outputs", "fit", "load_run_data", "preset"]
