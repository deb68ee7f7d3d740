"""The 1989 network: `Net1989`, its connection tables, counts and the unfold/fold convolution.

The parameters' names, shapes and initial values (params.py) and the tables need no torch;
the torch module and what runs it (`Net1989`, `count`, `predict`, `unfold_conv2d`) import
torch when first named here.
"""

from importlib import import_module

from lecun1989.model.params import PARAM_NAMES, init_params, layer_shapes
from lecun1989.model.tables import TABLES, connection_table, table_mask

_TORCH = {"Net1989": "net", "count": "net", "predict": "net", "unfold_conv2d": "conv"}


def __getattr__(name: str):
    if name in _TORCH:
        return getattr(import_module(f"lecun1989.model.{_TORCH[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Net1989", "PARAM_NAMES", "TABLES", "connection_table", "count", "init_params",
           "layer_shapes", "predict", "table_mask", "unfold_conv2d"]
