"""Update rules for the reference engine: plain SGD, AdamW (ablations); SDLM lives in sdlm.py.

Each optimizer updates parameters in place from one sample's gradients:
`step(params, grads, lr)`; `begin_pass` lets a rule look at the data before a pass, and
`observe(model, image)` at each pattern before its step (SDLM's running estimate).
"""

from __future__ import annotations

import torch

from lecun1989.config import TrainConfig
from lecun1989.optim.sdlm import SDLM


class SGD:
    """w <- w - lr * dE/dw, one pattern at a time (NC89 §4's stand-in used by reproductions)."""

    def begin_pass(self, model, pass_index, images, labels) -> None:
        pass

    def observe(self, model, image) -> None:
        pass

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: float) -> None:
        for p, g in zip(params, grads, strict=True):
            p.sub_(lr * g)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class AdamW:
    """torch.optim.AdamW with the learning rate set per step (the modern ablation ladder)."""

    def __init__(self, params: list[torch.Tensor], weight_decay: float):
        self.opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=weight_decay)

    def begin_pass(self, model, pass_index, images, labels) -> None:
        pass

    def observe(self, model, image) -> None:
        pass

    def step(self, params, grads, lr: float) -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, st in enumerate(self.opt.state.values()):
            for k, v in st.items():
                out[f"{i}.{k}"] = torch.as_tensor(v)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = self.opt.param_groups[0]["params"]
        for i, p in enumerate(params):
            keys = [k for k in state if k.startswith(f"{i}.")]
            if keys:
                self.opt.state[p] = {k.split(".", 1)[1]: state[k].clone().to(p.device)
                                     for k in keys}


def make_optimizer(cfg: TrainConfig, model) -> SGD | AdamW:
    """The update rule named by `cfg.optimizer` for the reference engine."""
    if cfg.optimizer == "adamw":
        return AdamW(list(model.parameters()), cfg.weight_decay)
    if cfg.optimizer == "sdlm":
        return SDLM(cfg, model)
    return SGD()
