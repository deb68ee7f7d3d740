"""SDLM: NC89's learning rule, stochastic diagonal Levenberg-Marquardt (EB98 §9.1).

NC89 §4 trains with "a special version of Newton's algorithm that uses a positive, diagonal
approximation of the Hessian" (LeCun 1987; Becker & LeCun 1988). Each parameter w gets its
own step size, the global eps (`lr`) divided by a damped estimate h of d2E/dw^2:

    w <- w - eps / (mu + h) * dE/dw                                           (EB98 eq. 9.1)

h is the average over `sdlm_samples` patterns (LeNet-5: 500, re-estimated before each pass,
mu = 0.02) of the Gauss-Newton second derivatives, back-propagated like the gradient with
the f'' terms dropped, so every one is >= 0. Notation: a unit's total input a, its output
y = f(a), the inputs x its weights multiply (padding included), D = d2E/da^2.

    loss      d2E/dy_k^2 = 2/10 for E = mean_k (y_k - t_k)^2 (NC89's MSE over 10 outputs;
              2 with train.loss_reduction=sum);
              p_k (1 - p_k) for softmax cross-entropy (ablations), p = softmax(y)
    unit      D_k = f'(a_k)^2 d2E/dy_k^2;  f'(a) = A S (1 - tanh^2(S a)) = (S/A)(A^2 - y^2)
              (ReLU: f' = 1 where y > 0, else 0); linear outputs (output_activation=False): f' = 1
    weight    d2E/dw_ki^2 = D_k x_i^2, summed over every connection sharing the weight
              (a conv kernel: over all output positions of its map)
    bias      d2E/db_k^2 = D_k (bias="unit"); summed over the map's units (bias="map")
    input     d2E/dx_i^2 = sum_k w_ki^2 D_k over every unit k that x_i feeds

Layer by layer (`gauss_newton_diagonal`; N patterns, each squared on its own, then summed;
x1 = pad(image), x2 = pad(y1), padded by 2 with `pad_value`, stride 2, 5x5 kernels):

    out  a4 = W4 y3 + b4          h_W4[k,i] = sum_n D4[n,k] y3[n,i]^2      h_b4 = sum_n D4
                                  d2y3[n,i] = sum_k W4[k,i]^2 D4[n,k]      (`dense_curvature`)
    H3   a3 = W3 flat(y2) + b3    the same three lines
    H2   a2[n,o,p,q] = b2[o,p,q] + sum_{c<k,i,j} W2[o,c,i,j] x2[n, table[o,c], 2p+i, 2q+j]
         (H2 map o reads the k H1 maps table[o]; b2[o,0,0] for all p,q with bias="map")
              h_W2[o,c,i,j] = sum_{n,p,q} D2[n,o,p,q] x2[n, table[o,c], 2p+i, 2q+j]^2
              h_b2[o,p,q]   = sum_n D2[n,o,p,q]          (bias="map": also summed over p,q)
              d2x2[n,m,r,s] = sum over (o,c) with table[o,c] = m, and p,q,i,j with
                              2p+i = r, 2q+j = s, of W2[o,c,i,j]^2 D2[n,o,p,q]
              d2y1 = d2x2 without its 2-pixel border (nothing propagates into padding)
         computed as a plain 12x12-map convolution whose kernel is zero off the table
         (`table_kernel`, `conv_curvature`: torch's weight- and input-gradient correlations
         with x^2 for x, D for dE/da, W^2 for W).
    H1   a1 = conv(x1, W1) + b1: h_W1 and h_b1 as for H2 with one input map; the padding's
         x^2 (1 for pad -1, 0 for pad 0) counts in h_W1. Nothing propagates to the image.

What this is and is not. Because d2E/dy^2 of the MSE loss is diagonal, h is the exact diagonal
of the Gauss-Newton matrix J^T H J for the output layer's and H3's parameters (each of their
weights acts through one unit). Deeper, the rule keeps only the diagonal of each layer's
curvature before propagating it (it drops the cross terms between the H3 units an H2 unit
feeds, and between the positions a shared kernel touches), so for H2 and H1 it is NOT the
diagonal of the network's Gauss-Newton matrix (nor, with cross-entropy, whose loss Hessian is
not diagonal, for H3). tests/test_sdlm.py proves the exact parts against torch.func.jacrev
and each layer's rule against that layer's own Jacobian. Measured on 20 USPS training digits,
paper preset, float64, median over entries of EB98 / exact: at the initial weights h2_w 1.14,
h2_b 1.09, h1_w 1.03, h1_b 1.09; after one SGD pass h2_w 0.83, h2_b 0.74, h1_w 0.34, h1_b 0.35
(spreads in docs/sdlm.md).

Choices where the papers are silent: the estimate uses the first `sdlm_samples` patterns of
each pass's data at the weights the pass starts with, averaged (train.sdlm_estimate="pass",
LeNet-5's way). NC89 cites Becker & LeCun 1988, whose estimate is a running average:
sdlm_estimate="running" starts from that average before the first pass, then before every
step mixes in the step's own pattern at the current weights, h <- (1 - g) h + g h_pattern
(g = train.sdlm_decay, a guess), and re-computes the factors. The estimate runs in the
model's dtype; dropout (an ablation) is off while it runs. With the per-pass estimate a step
costs what an SGD step costs: the factors 1 / (mu + h) are computed once per estimate, and
the update is w <- w - (lr * dE/dw) * (1 / (mu + h)); the running one adds a curvature pass
before every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from lecun1989.config import ModelConfig, TrainConfig
from lecun1989.errors import CheckpointError
from lecun1989.model.params import PAD, PARAM_NAMES, STRIDE
from lecun1989.model.tables import MAPS

Tensor = torch.Tensor


def loss_curvature(out: Tensor, cfg: TrainConfig) -> Tensor:
    """d2E/dy^2 of one pattern's loss for each output y, shape (N, 10); Gauss-Newton, >= 0."""
    if cfg.loss == "cross_entropy":  # softmax Hessian diag(p) - p p^T: keep its diagonal
        p = torch.softmax(out, dim=1)
        return p * (1 - p)
    if cfg.loss_reduction == "sum":  # E = sum_k (y_k - t_k)^2
        return torch.full_like(out, 2.0)
    return torch.full_like(out, 2 / out.shape[1])  # E = mean_k (y_k - t_k)^2 (NC89 MSE)


def activation_curvature(d2y: Tensor, y: Tensor, cfg: ModelConfig) -> Tensor:
    """d2E/da^2 = f'(a)^2 d2E/dy^2 (the f'' term dropped), with f' computed from y = f(a)."""
    if cfg.activation == "relu":
        return d2y * (y > 0).to(y.dtype)
    scale, slope = cfg.tanh_scale, cfg.tanh_slope
    slope_at_a = slope / scale * (scale * scale - y * y)  # A S (1 - tanh(S a)^2)
    return slope_at_a * slope_at_a * d2y


def dense_curvature(x: Tensor, w: Tensor, d2a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A full layer a = x W^T + b: (h_w, h_b) summed over the N patterns, and d2E/dx^2 (N, in)."""
    return d2a.T @ (x * x), d2a.sum(0), d2a @ (w * w)


def conv_curvature(x: Tensor, w: Tensor, d2a: Tensor, bias_shape: tuple[int, ...],
                   propagate: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """A strided convolution a = conv(x, w) + b of the padded input x.

    Returns (h_w, h_b) summed over patterns and positions, and d2E/dx^2 shaped like x (None
    unless `propagate`): the weight-gradient correlation with x^2 in place of x and D in place
    of dE/da, and the input-gradient one with w^2 in place of w.
    """
    h_w = conv2d_weight(x * x, w.shape, d2a, stride=STRIDE)
    h_b = d2a.sum(0)
    if bias_shape[-1] == 1:  # bias="map": one bias for all units of a map
        h_b = h_b.sum((1, 2), keepdim=True)
    if not propagate:
        return h_w, h_b, None
    return h_w, h_b, conv2d_input(x.shape, w * w, d2a, stride=STRIDE)


def table_kernel(w2: Tensor, table: Tensor) -> Tensor:
    """H2's (12, k, 5, 5) kernels as a (12, 12, 5, 5) one, zero where the table has no link."""
    dense = w2.new_zeros((w2.shape[0], MAPS, *w2.shape[2:]))
    dense[torch.arange(len(table))[:, None], table] = w2
    return dense


def h2_curvature(x2: Tensor, w2: Tensor, table: Tensor, d2a: Tensor,
                 bias_shape: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """H2 through the connection table: (h_w, h_b) and d2E/dy1^2 of H1's (unpadded) outputs.

    x2 is H1's padded output (N, 12, S+4, S+4); an H1 unit read by several H2 maps sums the
    shares of all of them (the dense kernel does this), and the padding border is dropped.
    """
    h_dense, h_b, d2x2 = conv_curvature(x2, table_kernel(w2, table), d2a, bias_shape)
    h_w = h_dense[torch.arange(len(table))[:, None], table]
    return h_w, h_b, d2x2[:, :, PAD:-PAD, PAD:-PAD]


@torch.no_grad()
def gauss_newton_diagonal(model, images: Tensor, cfg: TrainConfig) -> dict[str, Tensor]:
    """EB98's diagonal second derivatives for a batch, SUMMED over its patterns, by name.

    Each pattern's values are computed on their own (as if one pattern), then summed: with one
    image this is that pattern's diagonal. The labels play no part: the Gauss-Newton curvature
    of both losses depends on the outputs only. Dropout is off (eval mode) while it runs.
    """
    mcfg, was_training = model.cfg, model.training
    model.eval()
    try:
        layers = model.layers(images)
    finally:
        model.train(was_training)
    x = images.to(model.h1_w.dtype).reshape(len(images), 1, *images.shape[-2:])
    x1 = F.pad(x, (PAD,) * 4, value=mcfg.pad_value)  # padding counts as inputs (NC89)
    x2 = F.pad(layers["h1"], (PAD,) * 4, value=mcfg.pad_value)
    flat, y3, out = layers["h2"].flatten(1), layers["h3"], layers["out"]
    h = {}
    # output layer
    d2a4 = loss_curvature(out, cfg)
    if mcfg.output_activation:
        d2a4 = activation_curvature(d2a4, out, mcfg)
    h["out_w"], h["out_b"], d2y3 = dense_curvature(y3, model.out_w, d2a4)
    # H3: 30 units, fully connected to H2
    d2a3 = activation_curvature(d2y3, y3, mcfg)
    h["h3_w"], h["h3_b"], d2flat = dense_curvature(flat, model.h3_w, d2a3)
    # H2: 12 maps 4x4, each map's shared 5x5xk kernel reads k H1 maps through the table
    d2a2 = activation_curvature(d2flat.reshape(layers["h2"].shape), layers["h2"], mcfg)
    h["h2_w"], h["h2_b"], d2y1 = h2_curvature(x2, model.h2_w, model.table, d2a2,
                                              model.h2_b.shape)
    # H1: 12 maps 8x8 of the padded image; nothing propagates into the image
    d2a1 = activation_curvature(d2y1, layers["h1"], mcfg)
    h["h1_w"], h["h1_b"], _ = conv_curvature(x1, model.h1_w, d2a1, model.h1_b.shape,
                                             propagate=False)
    return {n: h[n].reshape(getattr(model, n).shape) for n in PARAM_NAMES}


def average_curvature(model, images, cfg: TrainConfig, batch: int = 500) -> dict[str, Tensor]:
    """The mean of `gauss_newton_diagonal` over all `images` (numpy or torch), in batches."""
    images = torch.as_tensor(images).to(model.h1_w.device)
    total = None
    for start in range(0, len(images), batch):
        part = gauss_newton_diagonal(model, images[start:start + batch], cfg)
        total = part if total is None else {n: total[n] + part[n] for n in total}
    return {n: v / len(images) for n, v in total.items()}


class SDLM:
    """Stochastic diagonal Levenberg-Marquardt for the reference engine (EB98 §9.1)."""

    def __init__(self, cfg: TrainConfig, model):
        self.cfg, self.mu, self.dtype = cfg, cfg.sdlm_mu, model.h1_w.dtype
        self.device = model.h1_w.device
        self.h: dict[str, Tensor] | None = None  # averaged d2E/dw^2, by parameter name
        self._inv: list[Tensor] = []  # 1 / (mu + h), in PARAM_NAMES order

    def begin_pass(self, model, pass_index, images, labels) -> None:
        """Re-estimate h on the pass's first `sdlm_samples` patterns at the current weights
        ('running': only when there is no estimate yet, before the first pass)."""
        if self.cfg.sdlm_estimate == "running" and self.h is not None:
            return
        self._set(average_curvature(model, images[:self.cfg.sdlm_samples], self.cfg))

    @torch.no_grad()
    def observe(self, model, image: Tensor) -> None:
        """Before a step ('running' only): h <- (1 - g) h + g h_pattern, the step's pattern's
        second derivatives at the current weights (Becker & LeCun 1988), g = sdlm_decay."""
        if self.cfg.sdlm_estimate != "running":
            return
        g, new = self.cfg.sdlm_decay, gauss_newton_diagonal(model, image, self.cfg)
        self._set({n: (1 - g) * self.h[n] + g * new[n] for n in PARAM_NAMES})

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: list[Tensor], lr: float) -> None:
        """w <- w - lr / (mu + h) * dE/dw for each parameter (given in PARAM_NAMES order)."""
        if self.h is None:
            raise RuntimeError("SDLM.step before begin_pass: estimate h first")
        for p, g, inv in zip(params, grads, self._inv, strict=True):
            p.addcmul_(g, inv, value=-lr)

    def state_dict(self) -> dict[str, Tensor]:
        """The current h tensors, keyed by parameter name (empty before the first estimate)."""
        return {} if self.h is None else {n: v.clone() for n, v in self.h.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore h from `state_dict` (an empty dict leaves SDLM un-estimated)."""
        if not state:
            self.h, self._inv = None, []
            return
        missing = [n for n in PARAM_NAMES if n not in state]
        if missing:
            raise CheckpointError(f"SDLM state lacks h for {missing}; resume from a checkpoint "
                                  "written with optimizer=sdlm")
        self._set({n: state[n].to(self.device, self.dtype).clone() for n in PARAM_NAMES})

    def _set(self, h: dict[str, Tensor]) -> None:
        self.h = h
        self._inv = [1 / (self.mu + h[n]) for n in PARAM_NAMES]
