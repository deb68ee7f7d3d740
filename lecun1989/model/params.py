"""The network's parameters without torch: their names and shapes, and the initial weights.

The compiled engines, the training loop and the run files need only these; importing them
does not import torch (2 s of every command's start-up). `Net1989` (net.py) is the torch
module built from them.
"""

from __future__ import annotations

import math

import numpy as np

from lecun1989.config import ModelConfig
from lecun1989.model.tables import MAPS, connection_table

KERNEL, STRIDE, PAD = 5, 2, 2  # NC89 §3: 5x5 kernels, stride 2; 2 pixels of padding (guess)
HIDDEN, CLASSES = 30, 10  # NC89 §3: H3 has 30 units, 10 outputs
PARAM_NAMES = ("h1_w", "h1_b", "h2_w", "h2_b", "h3_w", "h3_b", "out_w", "out_b")


def conv_out(size: int) -> int:
    """Side of a padded, strided 5x5 convolution's output (16 -> 8 -> 4)."""
    return (size + 2 * PAD - KERNEL) // STRIDE + 1


def layer_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter, in PARAM_NAMES order."""
    k = connection_table(cfg.table).shape[1]
    s1 = conv_out(cfg.input_size)
    s2 = conv_out(s1)
    unit = cfg.bias == "unit"  # NC89: one bias per unit, not per map
    return {
        "h1_w": (MAPS, 1, KERNEL, KERNEL),
        "h1_b": (MAPS, s1, s1) if unit else (MAPS, 1, 1),
        "h2_w": (MAPS, k, KERNEL, KERNEL),
        "h2_b": (MAPS, s2, s2) if unit else (MAPS, 1, 1),
        "h3_w": (HIDDEN, MAPS * s2 * s2),
        "h3_b": (HIDDEN,),
        "out_w": (CLASSES, HIDDEN),
        "out_b": (CLASSES,),
    }


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one unit through a weight of this shape (bias excluded)."""
    return math.prod(shape[1:])


def init_params(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Initial parameters as float64 arrays, the same for every dtype and engine.

    NC89: weights uniform in [-2.4/F, 2.4/F], F the fan-in; "2.4/sqrt(F)" is Karpathy's
    reading (a lost square root?). Biases: "zeros" (guess) or uniform like the weights; the
    output biases so too, unless `output_bias_init` sets them to one value (Karpathy: -1).
    """
    draw = _torch_rand(seed)
    shapes = layer_shapes(cfg)
    params = {}
    for layer in ("h1", "h2", "h3", "out"):
        w_shape, b_shape = shapes[f"{layer}_w"], shapes[f"{layer}_b"]
        f = fan_in(w_shape)
        r = 2.4 / f if cfg.init == "2.4/F" else 2.4 / math.sqrt(f)
        w = (draw(w_shape) * 2 - 1) * r
        b = (draw(b_shape) * 2 - 1) * r  # (drawn also when unused: the stream stays the same)
        if cfg.bias_init == "zeros":
            b = np.zeros(b_shape)
        params[f"{layer}_w"], params[f"{layer}_b"] = w, b
    if cfg.output_bias_init is not None:  # None: out_b as bias_init says
        params["out_b"][:] = cfg.output_bias_init
    return params


def _torch_rand(seed: int):
    """draw(shape): what `torch.rand(shape, generator=torch.Generator().manual_seed(seed),
    dtype=torch.float64)` returns, call after call, without torch: the same MT19937 stream
    (seeded as torch and numpy's RandomState seed it, seeds of 32 bits), each value from two
    32-bit draws as torch's CPU generator makes them (random64: the first draw the high
    word; its low 53 bits times 2**-53). Karpathy's repro and the notebook initialise with
    torch's generator; tests/test_model.py compares with torch itself."""
    generator = np.random.MT19937()
    generator.state = {"bit_generator": "MT19937",
                       "state": dict(zip(("key", "pos"),
                                         np.random.RandomState(seed).get_state()[1:3],
                                         strict=True))}

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        raw = generator.random_raw(2 * math.prod(shape)).astype(np.uint64)
        bits = ((raw[0::2] << np.uint64(32)) | raw[1::2]) & np.uint64((1 << 53) - 1)
        return (bits.astype(np.float64) * 2.0 ** -53).reshape(shape)

    return draw
