"""The fast engine: whole chunks of per-sample training inside compiled Numba code.

Same numbers as the reference engine (tests/test_fast_engine.py holds them together step
for step), far faster: a step is ~0.36 MFLOP, so PyTorch's per-call overhead dominates the
reference, while here forward, backward and update of a whole chunk run without returning to
Python (_kernels.py; how they are compiled: _compile.py). K models (the same configuration but
their seeds, the same patterns) train at once, one model per core at a time; model k's numbers
do not depend on K or on the other models.

    engine = FastEngine([cfg], [init_params(cfg.model, cfg.seed)])
    losses = engine.train_steps(images, labels, 0, 100, lr=np.array([0.03]))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.engines import _compile
from lecun1989.engines._buffers import aligned_copy, aligned_zeros, digit_images
from lecun1989.engines.base import ANY, Only, model_indices
from lecun1989.errors import CheckpointError, ConfigError
from lecun1989.model.params import PARAM_NAMES, layer_shapes
from lecun1989.model.tables import connection_table

# The kernels keep H1's units in phase order (_kernels' docstring): unit (y, x) of a map sits
# at 16 (2 (y % 2) + x % 2) + 4 (y // 2) + x // 2. _PHASE_ORDER[p] is the row-major index there.
_PHASE_ORDER = np.array([8 * (2 * a + ph // 2) + 2 * b + ph % 2
                         for ph in range(4) for a in range(4) for b in range(4)])

NAME = "fast"
# What the kernels compute (an allow-list: a new config value is refused until added here).
SUPPORTS = {
    "preset": ANY, "seed": ANY,
    "engine": ANY,  # (which engine was asked for is the caller's business)
    "device": ("auto", "cpu"),  # compiled for the CPU (auto: the fastest engine)
    "model.input_size": (16,),  # the kernels' layout is fixed at 16x16 (NC89 §2)
    "model.conv": ("native", "unfold"),  # the same arithmetic: unfold only in PyTorch
    "model.bias": ("unit", "map"), "model.table": Only(lambda t: True, "any connection table"),
    "model.pad_value": ANY, "model.activation": ("tanh", "relu"), "model.tanh_scale": ANY,
    "model.tanh_slope": ANY, "model.output_activation": (True, False),
    "model.init": ("2.4/F", "2.4/sqrt(F)"),  # (initial weights come from init_params)
    "model.bias_init": ("zeros", "uniform"), "model.output_bias_init": ANY,
    "model.dropout": ANY, "model.dtype": ("float32", "float64"),
    "train.passes": ANY, "train.optimizer": ("sgd", "sdlm", "adamw"), "train.lr": ANY,
    "train.lr_schedule": ANY, "train.lr_final": ANY, "train.weight_decay": ANY,
    "train.loss": ("mse", "cross_entropy"), "train.loss_reduction": ("mean", "sum"),
    "train.target": ANY,
    "train.shuffle": (False, True), "train.augment_shift": ANY,  # (the driver's patterns)
    "train.sdlm_mu": ANY, "train.sdlm_samples": ANY, "train.sdlm_decay": ANY,
    "train.sdlm_estimate": ANY, "train.loss_every": ANY,  # ('running': see RULES)
    "train.history_every": ANY, "train.snapshot_every": ANY,
    "data.name": ANY, "data.data_dir": ANY, "data.sample_seed": ANY,
    "data.limit_train": ANY, "data.limit_test": ANY, "data.validation": ANY,
}
# Each model has its own buffer: per-model step sizes come from the driver, initial weights
# from init_params; everything the kernels read from the config must be shared.
PER_MODEL = frozenset({"preset", "seed", "train.lr", "train.lr_schedule", "train.lr_final",
                       "model.init", "model.bias_init", "model.output_bias_init"})
RULES = [(lambda c: bool(c.model.dropout) and c.train.optimizer == "sdlm",
          "model.dropout with train.optimizer=sdlm (SDLM's estimate runs without dropout "
          "in the reference only)"),
         # a curvature pass before every step: the lanes engine and the reference have it
         (lambda c: c.train.optimizer == "sdlm" and c.train.sdlm_estimate == "running",
          "train.sdlm_estimate=running (the lanes and reference engines compute it)")]


class FastEngine:
    """K models with the same configuration but their own weights, trained at once.

    Methods return arrays with a leading K axis (engines/base.py's Engine). Model k's numbers
    do not depend on K or on the other models: seed k of a K-model run equals a single run
    with seed k, bit for bit.
    """

    name = NAME

    def __init__(self, cfgs: list[RunConfig], params_list: list[dict[str, np.ndarray]],
                 threads: int | None = None):
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        if not cfgs or len(cfgs) != len(params_list):
            raise ConfigError("the fast engine needs one config per parameter set (at least 1)")
        self.cfgs = list(cfgs)
        self.cfg = cfg = cfgs[0]
        self.dtype = np.dtype(cfg.model.dtype)
        _compile.compile_early(self.dtype.name)  # before numba's import: a first-ever run
        k = _compile.kernels()
        self.k, m = k, cfg.model
        self.shapes = layer_shapes(m)
        self.table = connection_table(m.table)
        self.unit_bias = m.bias == "unit"  # NC89: one bias per unit; "map": one per map
        relu, f = m.activation == "relu", self.dtype.type
        self.options = k.Options(  # the kernels' view of the configuration
            unit_bias=self.unit_bias, squash_out=bool(m.output_activation), relu=relu,
            ce=cfg.train.loss == "cross_entropy", sum_out=cfg.train.loss_reduction == "sum",
            dropout=bool(m.dropout),
            step_in_backward=cfg.train.optimizer in ("sgd", "sdlm"),
            adamw=cfg.train.optimizer == "adamw",
            curvature=False,
            A=f(1 if relu else m.tanh_scale), S=f(1 if relu else m.tanh_slope),
            pad=f(m.pad_value), target=f(cfg.train.target))
        # evaluation mode, and SDLM's estimate (options of the same types: no new compile)
        self.eval_options = self.options._replace(dropout=False, step_in_backward=False,
                                                   adamw=False)
        self.curvature_options = self.eval_options._replace(curvature=True)
        self.sdlm = cfg.train.optimizer == "sdlm"
        self.adamw = cfg.train.optimizer == "adamw"
        self.weight_decay = float(cfg.train.weight_decay)
        self._no_keep = np.zeros((0, k.MAPS * k.N2), self.dtype)  # for jobs that read none
        self._no_labels, self._no_out = np.zeros(0, np.int64), np.zeros((0, k.OUT))
        self.mu = self.dtype.type(cfg.train.sdlm_mu)
        self.estimated = False  # SDLM: h holds an estimate
        self.bufs = aligned_zeros((len(cfgs), k.SIZE), self.dtype)
        self.bufs[:, k.INV:k.INV + k.NPARAM] = 1  # plain SGD until SDLM estimates h
        for buf, params in zip(self.bufs, params_list, strict=True):
            self._put(buf, params)

    # --- parameters in and out of the kernels' flat layout -------------------------------

    def _views(self, buf: np.ndarray, base: int = 0) -> dict[str, np.ndarray]:
        """Views of buf's parameter-shaped region at `base` (parameters, HESS), reshaped to
        the kernels' layout; `_put` and `_get` map PARAM_NAMES shapes onto them."""
        k, s, n_in = self.k, self.shapes, self.table.shape[1]

        def region(start, shape):
            return buf[base + start:base + start + int(np.prod(shape))].reshape(shape)

        unit = self.unit_bias
        return {
            "h1_w": region(k.W1, (k.MAPS, k.TAPS)),
            "h1_b": region(k.B1, (k.MAPS, k.N1) if unit else (k.MAPS, 1)),
            "h2_w": region(k.W2, (k.MAPS, k.MAPS, k.TP))[:, :n_in, :k.TAPS],
            "h2_b": region(k.B2, (k.MAPS, k.N2) if unit else (k.MAPS, 1)),
            "h3_w": region(k.W3, (k.HP, k.MAPS * k.N2))[:s["h3_w"][0]],
            "h3_b": region(k.B3, (k.HP,))[:s["h3_b"][0]],
            "out_w": region(k.W4, (k.OUT, k.HP))[:, :s["out_w"][1]],
            "out_b": region(k.B4, (k.OUT,)),
        }

    def _put(self, buf, params, base: int = 0) -> None:
        for name, view in self._views(buf, base).items():
            value = np.asarray(params[name])
            if value.shape != self.shapes[name]:
                raise ConfigError(f"{name} has shape {value.shape}, expected "
                                  f"{self.shapes[name]} for this configuration")
            value = value.reshape(view.shape)
            view[...] = value[:, _PHASE_ORDER] if name == "h1_b" and self.unit_bias else value

    def _get(self, buf, base: int = 0) -> dict[str, np.ndarray]:
        out = {}
        for name, view in self._views(buf, base).items():
            if name == "h1_b" and self.unit_bias:
                view = view[:, np.argsort(_PHASE_ORDER)]
            out[name] = view.reshape(self.shapes[name]).copy()
        return out

    # --- the Engine protocol, with a leading K axis --------------------------------------

    def begin_pass(self, pass_index: int, images: np.ndarray, labels: np.ndarray) -> None:
        """SDLM: estimate h on the pass's first `sdlm_samples` patterns (sgd: nothing)."""
        if not self.sdlm:
            return
        images, labels = _contiguous(images), np.ascontiguousarray(labels, dtype=np.int64)
        n, k = min(self.cfg.train.sdlm_samples, len(labels)), self.k
        for buf in self.bufs:  # the kernel swaps the weights with their squares, and back
            buf[k.WSAVE:k.WSAVE + k.NPARAM] = buf[:k.NPARAM]
            buf[k.HESS:k.HESS + k.NPARAM] = 0
        self._run([(k.run, (buf, self.table, images, labels, self._no_keep, 0, n, k.ESTIMATE,
                            0.0, 0.0, self.curvature_options, self._no_out))
                   for buf in self.bufs])
        for buf in self.bufs:  # sdlm.SDLM.begin_pass: the mean over the n patterns
            buf[k.HESS:k.HESS + k.NPARAM] /= self.dtype.type(n)
            self._set_inverse(buf)
        self.estimated = True

    def _set_inverse(self, buf: np.ndarray) -> None:
        """INV = 1 / (mu + h), SDLM's step factor without lr (sdlm.SDLM._set)."""
        k = self.k
        buf[k.INV:k.INV + k.NPARAM] = self.dtype.type(1) / (self.mu + buf[k.HESS:k.HESS + k.NPARAM])

    def warm_up(self, images: np.ndarray, log=print) -> None:
        """Compile the kernels for these images (or load them from numba's cache) now, saying
        so when it will take a while, so that compile time is not counted as training."""
        if _compile.needs_compile(self.dtype.name):
            log("compiling the fast engine (the first run only: later runs load it)")
        self.predict(images[:1])

    def train_steps(self, images, labels, start: int, stop: int, lr: np.ndarray,
                    keep: np.ndarray | None = None) -> np.ndarray:
        """One update per pattern images[start:stop] for each model; losses (K, stop-start).
        lr: (K,) each model's step; keep: the models' dropout masks (K, N, 192)."""
        images, labels = _contiguous(images), np.ascontiguousarray(labels, dtype=np.int64)
        lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (len(self.bufs),))
        keeps = [self._no_keep] * len(self.bufs)
        if self.options.dropout:
            if keep is None or keep.shape != (len(self.bufs), len(labels), self.k.MAPS * self.k.N2):
                raise ConfigError("model.dropout needs each model's keep-masks: train_steps(..., "
                                  "keep=(K, N, 192) from train.loop.dropout_keep)")
            keeps = [np.ascontiguousarray(mask, dtype=self.dtype) for mask in keep]
        losses = np.empty((len(self.bufs), stop - start, 1))
        self._run([(self.k.run, (buf, self.table, images, labels, mask, start, stop,
                                 self.k.TRAIN, float(step), self.weight_decay, self.options, loss))
                   for buf, mask, step, loss in zip(self.bufs, keeps, lr, losses, strict=True)])
        return losses[:, :, 0]

    def predict(self, images: np.ndarray, models: Sequence[int] | None = None,
                block: int = 512) -> np.ndarray:
        """Each model's outputs (K, N, 10), float64; `models`: a subset, in that order."""
        images, models = _contiguous(images), model_indices(models, len(self.bufs))
        out = np.empty((len(models), len(images), self.k.OUT))
        self._run([(self.k.run, (aligned_copy(self.bufs[m]), self.table, images,
                                 self._no_labels, self._no_keep, first,
                                 min(first + block, len(images)), self.k.PREDICT, 0.0, 0.0,
                                 self.eval_options, model_out[first:first + block]))
                   for m, model_out in zip(models, out, strict=True)
                   for first in range(0, len(images), block)])
        return out

    def _run(self, jobs: list) -> None:
        """Run (kernel, args) jobs on the engine's threads (`_compile.run_jobs`)."""
        if jobs:
            _compile.run_jobs(self, jobs, ("fast", self.dtype.name, jobs[0][1][2].dtype.name),
                              _compile.fast_helpers(self.k))

    def params(self, models=None) -> list[dict[str, np.ndarray]]:
        """A copy of each model's parameters (the engine's dtype); `models`: a subset."""
        return [self._get(self.bufs[m]) for m in model_indices(models, len(self.bufs))]

    def optimizer_state(self, models=None) -> list[dict[str, np.ndarray]]:
        """Each model's SDLM h by parameter name ({} for sgd or before the first estimate), or
        AdamW's moments ("exp_avg.<name>", "exp_avg_sq.<name>") and "step"."""
        k, models = self.k, model_indices(models, len(self.bufs))
        if self.adamw:
            return [{**{f"exp_avg.{n}": v for n, v in self._get(self.bufs[m], k.EXP_AVG).items()},
                     **{f"exp_avg_sq.{n}": v
                        for n, v in self._get(self.bufs[m], k.EXP_AVG_SQ).items()},
                     "step": self.bufs[m, k.ADAM_STEP:k.ADAM_STEP + 1].copy()} for m in models]
        if not (self.sdlm and self.estimated):
            return [{} for _ in models]
        return [self._get(self.bufs[m], k.HESS) for m in models]

    def load_optimizer_state(self, states: list[dict[str, np.ndarray]]) -> None:
        """Restore what `optimizer_state` returned (SDLM's h; {} leaves it un-estimated)."""
        if len(states) != len(self.bufs):
            raise ConfigError(f"{len(states)} optimizer states for {len(self.bufs)} models")
        if not (self.sdlm or self.adamw) or not any(states):
            return
        k = self.k
        for buf, state in zip(self.bufs, states, strict=True):
            wanted = ([f"{m}.{n}" for m in ("exp_avg", "exp_avg_sq") for n in PARAM_NAMES]
                      + ["step"] if self.adamw else list(PARAM_NAMES))
            missing = [n for n in wanted if n not in state]
            if missing:
                raise CheckpointError(f"the optimizer state lacks {missing}; resume from a "
                                      f"checkpoint written with optimizer="
                                      f"{self.cfg.train.optimizer}")
            if self.adamw:
                for moment, base in (("exp_avg", k.EXP_AVG), ("exp_avg_sq", k.EXP_AVG_SQ)):
                    self._put(buf, {n: state[f"{moment}.{n}"] for n in PARAM_NAMES}, base)
                buf[k.ADAM_STEP] = np.asarray(state["step"]).reshape(-1)[0]
            else:
                self._put(buf, state, k.HESS)
                self._set_inverse(buf)
        self.estimated = self.sdlm


def _contiguous(images: np.ndarray) -> np.ndarray:
    return digit_images(images, "fast")
