"""The reference engine: PyTorch eager, one pattern per update, autograd for the gradients.

Slow (bound by PyTorch's per-call overhead; BENCHMARKS.md) but plainly correct: it is the
oracle the compiled engines are tested against, and it computes every configuration. K models
train one after another over each chunk of patterns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lecun1989.config import RunConfig
from lecun1989.engines.base import ANY, model_indices
from lecun1989.model.net import PARAM_NAMES, Net1989
from lecun1989.optim import make_optimizer

NAME = "reference"
SUPPORTS = {key: ANY for key in (  # every field: the reference computes every option
    "preset", "seed", "engine", "device",
    *(f"model.{n}" for n in ("input_size", "conv", "bias", "table", "pad_value", "activation",
                             "tanh_scale", "tanh_slope", "output_activation", "init",
                             "bias_init", "output_bias_init", "dropout", "dtype")),
    *(f"train.{n}" for n in ("passes", "optimizer", "lr", "lr_schedule", "lr_final",
                             "weight_decay", "loss", "loss_reduction", "target", "shuffle",
                             "augment_shift", "sdlm_mu", "sdlm_samples", "sdlm_estimate",
                             "sdlm_decay", "loss_every", "history_every", "snapshot_every")),
    *(f"data.{n}" for n in ("name", "data_dir", "sample_seed", "limit_train", "limit_test",
                            "validation")))}
# Each model has its own network and optimizer, so any setting that leaves the patterns alone
# may differ between them.
PER_MODEL = frozenset(k for k in SUPPORTS if not k.startswith("data.") and k not in (
    "train.passes", "train.shuffle", "train.augment_shift", "train.loss_every", "engine"))
RULES = [(lambda c: c.device == "cuda" and not torch.cuda.is_available(),
          "device=cuda: torch sees no CUDA GPU here (use --device cpu, or auto)")]


def resolve_device(cfg: RunConfig) -> str:
    """'cuda' or 'cpu': auto is CUDA when torch sees a GPU (the notebook's get_device())."""
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def sample_loss(out: torch.Tensor, label: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """One pattern's loss: NC89's MSE to +-target (mean over the outputs, or their sum with
    train.loss_reduction=sum), or cross-entropy."""
    if cfg.train.loss == "cross_entropy":
        return F.cross_entropy(out, label)
    t = torch.full_like(out, -cfg.train.target)
    t[torch.arange(len(label)), label] = cfg.train.target
    if cfg.train.loss_reduction == "sum":
        return torch.sum((out - t) ** 2)
    return torch.mean((out - t) ** 2)


@contextlib.contextmanager
def _one_thread():
    """One pattern per step: the ops are tiny, so more intra-op threads only add
    synchronisation (BENCHMARKS.md). Restores the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ReferenceEngine:
    """Trains K `Net1989`s with PyTorch eager."""

    name = NAME

    def __init__(self, cfgs: list[RunConfig], params: list[dict[str, np.ndarray]]):
        self.cfgs = list(cfgs)
        self.models, self.optimizers = [], []
        for cfg, p in zip(self.cfgs, params, strict=True):
            model = Net1989(cfg.model)
            model.load_numpy_params(p)
            model.to(resolve_device(cfg))
            self.models.append(model)
            self.optimizers.append(make_optimizer(cfg.train, model))

    def warm_up(self, images, log=print) -> None:
        """Nothing to compile."""

    def begin_pass(self, pass_index, images, labels) -> None:
        with _one_thread():
            for model, optimizer in zip(self.models, self.optimizers, strict=True):
                optimizer.begin_pass(model, pass_index, images, labels)

    def train_steps(self, images, labels, start, stop, lr, keep=None) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images[start:stop]))
        y = torch.from_numpy(np.ascontiguousarray(labels[start:stop]))
        lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (len(self.models),))
        losses = np.empty((len(self.models), stop - start))
        with _one_thread():
            for m, (cfg, model, optimizer) in enumerate(zip(self.cfgs, self.models,
                                                            self.optimizers, strict=True)):
                k = None if keep is None else torch.from_numpy(
                    np.ascontiguousarray(keep[m, start:stop]))
                params = [getattr(model, n) for n in PARAM_NAMES]
                model.train()
                for i in range(stop - start):
                    optimizer.observe(model, x[i:i + 1])  # (SDLM's running estimate)
                    out = model(x[i:i + 1], None if k is None else k[i:i + 1])
                    loss = sample_loss(out, y[i:i + 1], cfg)
                    grads = torch.autograd.grad(loss, params)
                    optimizer.step(params, grads, float(lr[m]))
                    losses[m, i] = loss.item()
        return losses

    def predict(self, images, models: Sequence[int] | None = None) -> np.ndarray:
        return np.stack([self.models[m].predict_numpy(images)
                         for m in model_indices(models, len(self.models))])

    def params(self, models=None) -> list[dict[str, np.ndarray]]:
        return [self.models[m].numpy_params() for m in model_indices(models, len(self.models))]

    def optimizer_state(self, models=None) -> list[dict[str, np.ndarray]]:
        return [{k: v.detach().cpu().numpy().copy()
                 for k, v in self.optimizers[m].state_dict().items()}
                for m in model_indices(models, len(self.models))]

    def load_optimizer_state(self, states) -> None:
        for optimizer, state in zip(self.optimizers, states, strict=True):
            optimizer.load_state_dict({k: torch.from_numpy(np.array(v))
                                       for k, v in state.items()})
