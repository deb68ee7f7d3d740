"""The 1989 network: `Net1989`, its connection tables, counts and the unfold/fold convolution."""

from lecun1989.model.conv import unfold_conv2d
from lecun1989.model.net import PARAM_NAMES, Net1989, count, init_params, layer_shapes, predict
from lecun1989.model.tables import TABLES, connection_table, table_mask

__all__ = ["Net1989", "PARAM_NAMES", "TABLES", "connection_table", "count", "init_params",
           "layer_shapes", "predict", "table_mask", "unfold_conv2d"]
