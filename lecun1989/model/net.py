"""Net1989: the 1989 zip-code network (NC89 §3), configured by `ModelConfig`.

    input 1@16x16 -> pad 2 -> H1 12@8x8 (5x5, stride 2)
                  -> pad 2 -> H2 12@4x4 (5x5, stride 2, each map sees k of the 12 H1 maps)
                  -> H3 30 (full) -> output 10 (full)

>>> from lecun1989.model import Net1989, count
>>> count(Net1989())
{'units': 1256, 'connections': 64660, 'parameters': 9760, 'macs': 63660}
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lecun1989.config import ModelConfig
from lecun1989.model.conv import unfold_conv2d
from lecun1989.model.params import CLASSES, PAD, PARAM_NAMES, STRIDE, fan_in, init_params
from lecun1989.model.tables import MAPS, connection_table


class Net1989(nn.Module):
    """The network; parameters are attributes named as in PARAM_NAMES."""

    def __init__(self, cfg: ModelConfig | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        dtype = getattr(torch, cfg.dtype)
        self.register_buffer("table", torch.from_numpy(connection_table(cfg.table)),
                             persistent=False)
        for name, value in init_params(cfg, seed).items():
            setattr(self, name, nn.Parameter(torch.from_numpy(value).to(dtype)))
        self._conv = unfold_conv2d if cfg.conv == "unfold" else F.conv2d

    def act(self, a: torch.Tensor) -> torch.Tensor:
        """NC89's squashing function A tanh(S a) (EB98: A = 1.7159, S = 2/3), or ReLU."""
        if self.cfg.activation == "relu":
            return torch.relu(a)
        return self.cfg.tanh_scale * torch.tanh(self.cfg.tanh_slope * a)

    def layers(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every layer's output for a batch x of shape (N, 1, S, S), in order.

        Dropout (ablations), in training mode only: H2's output times `keep` (N, 192), the
        masks train/loop.dropout_keep draws for every engine alike, or F.dropout without it.
        """
        cfg, pad = self.cfg, (PAD,) * 4
        x = x.to(self.h1_w.device, self.h1_w.dtype)
        h1 = self.act(self._conv(F.pad(x, pad, value=cfg.pad_value), self.h1_w, stride=STRIDE)
                      + self.h1_b)
        # H2: gather each H2 map's k H1 inputs, then one grouped convolution (groups = 12)
        x2 = F.pad(h1, pad, value=cfg.pad_value)[:, self.table.reshape(-1)]
        h2 = self.act(self._conv(x2, self.h2_w, stride=STRIDE, groups=MAPS) + self.h2_b)
        flat = h2.flatten(1)
        if cfg.dropout and self.training:
            flat = flat * keep.to(flat.device, flat.dtype) if keep is not None else \
                F.dropout(flat, cfg.dropout)
        h3 = self.act(flat @ self.h3_w.T + self.h3_b)
        out = h3 @ self.out_w.T + self.out_b
        if cfg.output_activation:
            out = self.act(out)
        return {"h1": h1, "h2": h2, "h3": h3, "out": out}

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.layers(x, keep)["out"]

    @torch.no_grad()
    def predict_numpy(self, images: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Outputs (N, 10) as float64 for images (N, 1, S, S), in evaluation mode; changes no
        global state (threads, random generators), so inference has no training side effects."""
        was_training = self.training
        self.eval()
        try:
            outs = [self(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])))
                    for i in range(0, len(images), batch)]
        finally:
            self.train(was_training)
        if not outs:
            return np.zeros((0, CLASSES))
        return torch.cat(outs).double().cpu().numpy()

    def numpy_params(self) -> dict[str, np.ndarray]:
        """A copy of the parameters as numpy arrays (the engines' exchange format)."""
        return {n: getattr(self, n).detach().cpu().numpy().copy() for n in PARAM_NAMES}

    def load_numpy_params(self, params: dict[str, np.ndarray]) -> None:
        """Set the parameters from numpy arrays of the right shapes."""
        with torch.no_grad():
            for n in PARAM_NAMES:
                p = getattr(self, n)
                p.copy_(torch.as_tensor(np.asarray(params[n]).reshape(p.shape), dtype=p.dtype))


def predict(cfg: ModelConfig, params: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """The outputs (N, 10), float64, of the network with these parameters: inference alone,
    without a training engine or its side effects."""
    net = Net1989(cfg)
    net.load_numpy_params(params)
    return net.predict_numpy(images)


def layers(cfg: ModelConfig, params: dict[str, np.ndarray], images: np.ndarray
           ) -> dict[str, np.ndarray]:
    """Every layer's output (`Net1989.layers`: h1, h2, h3, out), float64, for images
    (N, 1, S, S) under these parameters, in evaluation mode."""
    net = Net1989(cfg)
    net.load_numpy_params({k: np.asarray(v) for k, v in params.items()})
    net.eval()
    with torch.no_grad():
        return {k: v.double().cpu().numpy()
                for k, v in net.layers(torch.from_numpy(np.ascontiguousarray(images))).items()}


def count(model: Net1989) -> dict[str, int]:
    """Units, connections, free parameters and multiply-accumulates of one forward pass.

    Measured from the model: a forward pass gives each layer's units; a unit's connections
    are its weighted inputs (padding included, as NC89 counts them) plus its bias.
    """
    size = model.cfg.input_size
    with torch.no_grad():
        layers = model.layers(torch.zeros(1, 1, size, size))
    units, connections, macs = size * size, 0, 0
    for name, out in layers.items():
        n = out[0].numel()
        w = getattr(model, f"{name}_w")
        units += n
        macs += n * fan_in(tuple(w.shape))
        connections += n * (fan_in(tuple(w.shape)) + 1)
    parameters = sum(p.numel() for p in model.parameters())
    return {"units": units, "connections": connections, "parameters": parameters, "macs": macs}
