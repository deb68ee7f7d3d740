"""The reference engine: PyTorch eager, one pattern per update, autograd for the gradients.

Slow (about 1.5 ms a step, bound by per-call overhead) but plainly correct: it is the
oracle the fast engine is tested against.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lecun1989.config import RunConfig
from lecun1989.model.net import PARAM_NAMES, Net1989
from lecun1989.train.optim import make_optimizer


def sample_loss(out: torch.Tensor, label: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """One pattern's loss: NC89's MSE to +-target (mean over the outputs), or cross-entropy."""
    if cfg.train.loss == "cross_entropy":
        return F.cross_entropy(out, label)
    t = torch.full_like(out, -cfg.train.target)
    t[torch.arange(len(label)), label] = cfg.train.target
    return torch.mean((out - t) ** 2)


class ReferenceEngine:
    """Trains a `Net1989` with PyTorch eager."""

    name = "reference"

    def __init__(self, cfg: RunConfig, params: dict[str, np.ndarray]):
        self.cfg = cfg
        # One pattern per step: the ops are tiny, so extra intra-op threads only add
        # synchronisation (measured 5 ms/step with 1 thread vs 124 ms with 2 on a loaded box).
        torch.set_num_threads(1)
        torch.manual_seed(cfg.seed)  # dropout without the driver's masks (keep=None)
        self.model = Net1989(cfg.model)
        self.model.load_numpy_params(params)
        self._params = [getattr(self.model, n) for n in PARAM_NAMES]
        self.optimizer = make_optimizer(cfg.train, self.model)

    def begin_pass(self, pass_index, images, labels) -> None:
        self.optimizer.begin_pass(self.model, pass_index, images, labels)

    def train_steps(self, images, labels, start, stop, lr, keep=None) -> np.ndarray:
        self.model.train()
        x = torch.from_numpy(np.ascontiguousarray(images[start:stop]))
        y = torch.from_numpy(np.ascontiguousarray(labels[start:stop]))
        k = None if keep is None else torch.from_numpy(np.ascontiguousarray(keep[start:stop]))
        losses = np.empty(stop - start)
        for i in range(stop - start):
            out = self.model(x[i:i + 1], None if k is None else k[i:i + 1])
            loss = sample_loss(out, y[i:i + 1], self.cfg)
            grads = torch.autograd.grad(loss, self._params)
            self.optimizer.step(self._params, grads, lr)
            losses[i] = loss.item()
        return losses

    @torch.no_grad()
    def predict(self, images, batch: int = 1024) -> np.ndarray:
        self.model.eval()
        outs = [self.model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])))
                for i in range(0, len(images), batch)]
        return torch.cat(outs).double().numpy()

    def params(self) -> dict[str, np.ndarray]:
        return self.model.numpy_params()

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy()
                for k, v in self.optimizer.state_dict().items()}

    def load_optimizer_state(self, state) -> None:
        self.optimizer.load_state_dict({k: torch.from_numpy(np.array(v))
                                        for k, v in state.items()})
