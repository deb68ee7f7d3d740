"""The lanes engine: K models trained in lockstep, the model index in SIMD lanes.

The paper's fixed pattern order (NC89 §4) means K models see the same pattern at the same
step, so their arithmetic has the same shape: _lanes_kernels.py computes LANES models at
once, every operation a vector operation over models, and this module runs the blocks of
LANES models on threads. Each model may have its own seed and scalar settings (PER_MODEL):
a grid over constants and seeds is one engine. `predict`, where patterns are independent,
may turn the layout around (LANES patterns of one model in the lanes) when the models leave
lanes of their blocks empty: the same bits, fewer lanes computed. The numbers equal the
reference engine's (tests/test_lanes_engine.py); a model's numbers do not depend on the
models beside it.

    engine = LanesEngine(cfgs, [init_params(c.model, c.seed) for c in cfgs])
    losses = engine.train_steps(images, labels, 0, 100, lr=np.full(len(cfgs), 0.03))

What it computes: tanh and ReLU units, MSE (mean or sum over the outputs) and softmax
cross-entropy, SGD, SDLM (its per-pass estimate on train.sdlm_samples patterns, or the running
estimate, one pattern's curvature before every step; with dropout too, which the fast engine
refuses), AdamW, unit and map biases, any connection table, any pad_value, squashed or
linear outputs, dropout (each model's masks given to `train_steps`), float32 and float64.
Per model (PER_MODEL): the seed and init ranges (the initial weights), each chunk's lr or
eps, SDLM's mu and running-average weight g, the MSE target.

What it refuses (SUPPORTS, PER_MODEL, `unsupported`), and why:
- model.input_size other than 16: the kernels' layout is built for 16x16 digits (NC89 §2);
- train.shuffle and train.augment_shift unless all models share the seed: the seed then
  picks each model's patterns, and the lanes must all see the same pattern;
- models that differ in a field outside PER_MODEL (the dtype, the optimizer, the loss, the
  architecture, the data, ...): those change the arithmetic's shape or the data, not a
  scalar a lane can hold. Train such models in separate engines.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.engines import _compile
from lecun1989.engines._buffers import aligned_zeros, digit_images
from lecun1989.engines.base import ANY, unsupported
from lecun1989.errors import CheckpointError, ConfigError
from lecun1989.model.params import PARAM_NAMES, layer_shapes
from lecun1989.model.tables import connection_table

NAME = "lanes"
SUPPORTS: dict[str, object] = {
    "preset": ANY, "seed": ANY, "engine": ANY,
    "device": ("auto", "cpu"),  # compiled for the CPU (auto: the fastest engine)
    "model.input_size": (16,),  # the kernels' layout (NC89 §2: 16x16 digits)
    "model.conv": ANY,  # native and unfold compute the same function
    "model.bias": ("unit", "map"), "model.table": ANY, "model.pad_value": ANY,
    "model.activation": ("tanh", "relu"), "model.tanh_scale": ANY, "model.tanh_slope": ANY,
    "model.output_activation": (True, False), "model.init": ANY, "model.bias_init": ANY,
    "model.output_bias_init": ANY, "model.dropout": ANY,
    "model.dtype": ("float32", "float64"),
    "train.passes": ANY, "train.optimizer": ("sgd", "sdlm", "adamw"), "train.lr": ANY,
    "train.lr_schedule": ANY, "train.lr_final": ANY, "train.weight_decay": ANY,
    "train.loss": ("mse", "cross_entropy"), "train.loss_reduction": ("mean", "sum"),
    "train.target": ANY,
    "train.shuffle": ANY, "train.augment_shift": ANY,  # with one seed only (engines/base.py)
    "train.sdlm_mu": ANY, "train.sdlm_samples": ANY, "train.sdlm_estimate": ("pass", "running"),
    "train.sdlm_decay": ANY, "train.loss_every": ANY,
    "train.history_every": ANY, "train.snapshot_every": ANY,
    "data.name": ANY, "data.data_dir": ANY, "data.sample_seed": ANY,
    "data.limit_train": ANY, "data.limit_test": ANY, "data.validation": ANY,
}
# What a lane holds on its own: the initial weights (seed, init ranges) and the scalars the
# kernels read per lane (lr or eps for each chunk, SDLM's mu, the MSE target).
PER_MODEL = frozenset({"preset", "seed", "train.lr", "train.lr_schedule", "train.lr_final",
                       "train.sdlm_mu", "train.sdlm_decay", "train.target", "model.init",
                       "model.bias_init", "model.output_bias_init"})
RULES: list = []
# `predict` with patterns in the lanes costs about this many times a block's lane-pattern
# (BENCHMARKS.md, "predict"): it is chosen when the models needed fill few enough lanes
ROWS_COST = 1.25


def _kernels():
    from lecun1989.engines import _lanes_kernels  # (numba compiles on first use)

    return _lanes_kernels


# Compiles `run` into numba's disk cache in processes of their own (see `_compile_elsewhere`):
#     -c _HELPER ROOT DTYPE IMAGE_DTYPE forward DONE   # `forward` and its callees, then DONE
#     -c _HELPER ROOT DTYPE IMAGE_DTYPE run DONE       # `backward`'s side; waits for DONE
#                                                      # (loads `forward` from the cache); `run`
# ("all": both, one after the other). The package's __init__ is skipped (torch: seconds);
# numba's cache keys on the module's name and file, so the parent then loads what they saved.
_HELPER = """
import sys, time, types
from pathlib import Path
root, dtype, image_dtype, part, done = sys.argv[1:6]
for name, path in (("lecun1989", Path(root)), ("lecun1989.engines", Path(root, "engines"))):
    package = types.ModuleType(name)
    package.__path__ = [str(path)]
    sys.modules[name] = package
import numpy as np
from numba import typeof
from numba.core import config, types as nt
from lecun1989.engines import _lanes_kernels as k
config.SLP_VECTORIZE, config.LOOP_VECTORIZE = 1, 0
f, flags = np.dtype(dtype).type, k.Options._fields.index("A")
o = k.Options(*[False] * flags, *[f(0)] * (len(k.Options._fields) - flags))
args = (np.zeros(k.ROWS * k.LANES, f), np.zeros(k.XSIZE, f), np.zeros((12, 8), np.int64),
        np.zeros((1, 1, 16, 16), image_dtype), np.zeros(1, np.int64),
        np.zeros((0, 192, k.LANES), f), 0, 0, 0, np.zeros(k.LANES), 0.0, o,
        np.zeros((0, k.LANES)))
sig = tuple(typeof(a) for a in args)
buf, xs, table, images, labels, o = (sig[i] for i in (0, 1, 2, 3, 4, 11))
try:
    if part in ("forward", "all"):
        k.forward.compile((buf, xs, nt.Array(images.dtype, 2, "C"), table, o, nt.int64))
finally:
    if part == "forward":
        Path(done).touch()
if part in ("run", "all"):
    k.backward.compile((buf, xs, labels.dtype, table, o))
    k.adamw_step.compile((buf, sig[9], nt.float64))
    waited = time.monotonic()
    while part == "run" and not Path(done).exists() and time.monotonic() - waited < 600:
        time.sleep(0.05)
    k.run.compile(sig)
"""


def _compile_elsewhere(dtype: str, image_dtype: str) -> bool:
    """Compile `run` for these dtypes in helper processes (_HELPER: the forward and the
    backward side at once on two cores); False if that failed.

    Why: the process that compiled the kernels runs them several times slower than any
    process that loads them from numba's cache (BENCHMARKS.md, the lanes engine; the
    compiling process's own copies of the callees are the likely cause, as fast.py found
    for its kernels). Compiled elsewhere, every process runs the cached code."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if not sys.executable or getattr(sys, "frozen", False):
        return False
    root = Path(__file__).resolve().parents[1]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    parts = ("forward", "run") if cores >= 2 else ("all",)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for part in parts:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", _HELPER, str(root), dtype, image_dtype, part,
                     os.path.join(tmp, "forward-done")], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return all(p.wait(timeout=900) == 0 for p in procs)
        except (OSError, subprocess.TimeoutExpired):
            return False
        finally:
            for p in procs:  # after an error or an interrupt: none left running
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _helpers(args) -> bool:
    """`elsewhere` for _compile.compiled_elsewhere: compile `run` for these argument types
    in helper processes (`_compile_elsewhere`)."""
    return (str(args[3].dtype) in ("float32", "float64")
            and _compile_elsewhere(str(args[0].dtype), str(args[3].dtype)))


class LanesEngine:
    """K models in blocks of LANES lanes; methods take and return a leading K axis."""

    name = "lanes"

    def __init__(self, cfgs: list[RunConfig], params: list[dict[str, np.ndarray]],
                 threads: int | None = None):
        if not cfgs or len(cfgs) != len(params):
            raise ConfigError("LanesEngine needs one config per parameter set (at least 1)")
        reason = unsupported(sys.modules[__name__], cfgs)
        if reason:
            raise ConfigError(f"--engine lanes: {reason}")
        self.cfgs, self.cfg = cfgs, cfgs[0]
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        self._predict_buffers: dict[tuple, np.ndarray] = {}  # `_predict_buffer`
        self.k = k = _kernels()
        m, t = self.cfg.model, self.cfg.train
        self.dtype, self.n_models = np.dtype(m.dtype), len(cfgs)
        self.shapes, self.table = layer_shapes(m), connection_table(m.table)
        self.unit_bias, relu, f = m.bias == "unit", m.activation == "relu", self.dtype.type
        self.options = k.Options(
            unit_bias=self.unit_bias, squash_out=bool(m.output_activation), relu=relu,
            ce=t.loss == "cross_entropy", sum_out=t.loss_reduction == "sum",
            dropout=bool(m.dropout), sgd=t.optimizer != "adamw",
            per_param=t.optimizer == "sdlm", adamw=t.optimizer == "adamw", curvature=False,
            A=f(1 if relu else m.tanh_scale), S=f(1 if relu else m.tanh_slope),
            pad=f(m.pad_value))
        self.eval_options = self.options._replace(dropout=False, sgd=False, per_param=False,
                                                  adamw=False)
        self.curvature_options = self.eval_options._replace(curvature=True)
        self.sdlm, self.adamw = t.optimizer == "sdlm", t.optimizer == "adamw"
        self.running = self.sdlm and t.sdlm_estimate == "running"
        self.weight_decay = float(t.weight_decay)
        self.estimated = False  # SDLM: h holds an estimate
        n_blocks = -(-len(cfgs) // k.LANES)
        self.bufs = aligned_zeros((n_blocks, k.ROWS * k.LANES), self.dtype)
        self.mu = np.ones((n_blocks, k.LANES), self.dtype)  # padded lanes: mu 1, lr 0
        self.decay = np.zeros((n_blocks, k.LANES), self.dtype)  # SDLM 'running': g
        for b in range(n_blocks if self.sdlm else 0):  # SDLM: plain SGD until estimated
            self._rows(b)[k.INV:k.INV + k.NPARAM] = 1
        for i, (cfg, p) in enumerate(zip(cfgs, params, strict=True)):
            b, lane = divmod(i, k.LANES)
            self._put(b, lane, p)
            self._rows(b)[k.TGT, lane] = cfg.train.target
            self.mu[b, lane] = cfg.train.sdlm_mu
            self.decay[b, lane] = cfg.train.sdlm_decay

    # --- parameters in and out of the rows -----------------------------------------------

    def _rows(self, b: int) -> np.ndarray:
        """Block b's buffer as (ROWS, LANES)."""
        return self.bufs[b].reshape(self.k.ROWS, self.k.LANES)

    def _views(self, b: int, lane: int, base: int = 0) -> dict[str, np.ndarray]:
        """Views of one lane's parameter-shaped region at row `base` (parameters, HESS, AdamW's
        moments), shaped as the kernels' layout; `_put` and `_get` map PARAM_NAMES onto them."""
        k, rows, n_in = self.k, self._rows(b)[:, lane], self.table.shape[1]

        def region(start, shape):
            return rows[base + start:base + start + int(np.prod(shape))].reshape(shape)

        unit = self.unit_bias
        return {"h1_w": region(k.W1, (k.MAPS, k.TAPS)),
                "h1_b": region(k.B1, (k.MAPS, k.N1) if unit else (k.MAPS,)),
                "h2_w": region(k.W2, (k.MAPS, k.MAPS, k.TAPS))[:, :n_in],
                "h2_b": region(k.B2, (k.MAPS, k.N2) if unit else (k.MAPS,)),
                "h3_w": region(k.W3, (k.HID, k.MAPS * k.N2)), "h3_b": region(k.B3, (k.HID,)),
                "out_w": region(k.W4, (k.OUT, k.HID)), "out_b": region(k.B4, (k.OUT,))}

    def _put(self, b: int, lane: int, params: dict[str, np.ndarray], base: int = 0) -> None:
        for name, view in self._views(b, lane, base).items():
            value = np.asarray(params[name])
            if value.shape != self.shapes[name]:
                raise ConfigError(f"{name} has shape {value.shape}, expected "
                                  f"{self.shapes[name]} for this configuration")
            view[...] = value.reshape(view.shape)

    def _get(self, model: int, base: int = 0) -> dict[str, np.ndarray]:
        b, lane = divmod(model, self.k.LANES)
        return {name: view.reshape(self.shapes[name]).copy()
                for name, view in self._views(b, lane, base).items()}

    def _models(self, models) -> list[int]:
        return list(range(self.n_models)) if models is None else [int(m) for m in models]

    # --- the K-model engine interface ------------------------------------------------------

    def begin_pass(self, pass_index: int, images: np.ndarray, labels: np.ndarray) -> None:
        """SDLM: estimate h on the pass's first `sdlm_samples` patterns (else nothing;
        'running': only while there is no estimate yet, before the first pass)."""
        if not self.sdlm or (self.running and self.estimated):
            return
        images, labels = _contiguous(images), np.ascontiguousarray(labels, dtype=np.int64)
        n = min(self.cfg.train.sdlm_samples, len(labels))
        self._curvature_sum(images, labels, 0, n)
        for b in range(len(self.bufs)):  # sdlm.SDLM.begin_pass: the mean over the n patterns
            self._hess(b)[...] /= self.dtype.type(n)
            self._set_inverse(b)
        self.estimated = True

    def _hess(self, b: int) -> np.ndarray:
        """Block b's h, (NPARAM, LANES)."""
        return self._rows(b)[self.k.HESS:self.k.HESS + self.k.NPARAM]

    def _curvature_sum(self, images, labels, start: int, stop: int) -> None:
        """Every block's h := the sum over patterns start..stop-1 of their second derivatives
        at the current weights (the ESTIMATE job)."""
        k = self.k
        for b in range(len(self.bufs)):  # the kernel swaps the weights with their squares
            rows = self._rows(b)
            rows[k.WSAVE:k.WSAVE + k.NPARAM] = rows[:k.NPARAM]
            rows[k.HESS:k.HESS + k.NPARAM] = 0
        self._run([(buf, images, labels, self._no_keep(), start, stop, k.ESTIMATE,
                    self._no_lr(), self.curvature_options, self._no_out())
                   for buf in self.bufs])

    def _observe(self, images, labels, i: int) -> None:
        """SDLM 'running', before pattern i's step: h <- (1 - g) h + g h_i, each lane with its
        g (sdlm.SDLM.observe)."""
        old = [self._hess(b).copy() for b in range(len(self.bufs))]
        self._curvature_sum(images, labels, i, i + 1)
        for b in range(len(self.bufs)):
            g = self.decay[b]
            self._hess(b)[...] = (1 - g) * old[b] + g * self._hess(b)
            self._set_inverse(b)

    def _set_inverse(self, b: int) -> None:
        """INV = 1 / (mu + h), each lane with its mu (sdlm.SDLM._set)."""
        k, rows = self.k, self._rows(b)
        rows[k.INV:k.INV + k.NPARAM] = self.dtype.type(1) / (self.mu[b]
                                                              + rows[k.HESS:k.HESS + k.NPARAM])

    def train_steps(self, images, labels, start: int, stop: int, lr,
                    keep: np.ndarray | None = None) -> np.ndarray:
        """One update per pattern images[start:stop] for every model; losses (K, stop-start).
        lr: each model's SGD lr or SDLM eps (K,) (a number: the same for all); keep: each
        model's dropout masks for the pass (K, N, 192), `train.loop.dropout_keep`."""
        images, labels = _contiguous(images), np.ascontiguousarray(labels, dtype=np.int64)
        k, n = self.k, stop - start
        lr = np.broadcast_to(np.asarray(lr, np.float64), (self.n_models,))
        wanted = (self.n_models, len(labels), k.MAPS * k.N2)
        if self.options.dropout and (keep is None or np.shape(keep) != wanted):
            raise ConfigError("model.dropout needs each model's keep-masks for the pass: "
                              "train_steps(..., keep=np.stack([dropout_keep(cfg, pass, "
                              "len(labels)) for cfg in cfgs]))")
        if self.running:  # one pattern at a time, h updated before each step
            out = np.empty((self.n_models, n))
            for i in range(start, stop):
                self._observe(images, labels, i)
                out[:, i - start] = self._steps(images, labels, i, i + 1, lr, keep)[:, 0]
            return out
        return self._steps(images, labels, start, stop, lr, keep)

    def _steps(self, images, labels, start, stop, lr, keep) -> np.ndarray:
        """`train_steps` without the running estimate: the TRAIN job on every block."""
        k, n = self.k, stop - start
        jobs, losses = [], np.zeros((len(self.bufs), n, k.LANES))
        for b, buf in enumerate(self.bufs):
            models = range(b * k.LANES, min((b + 1) * k.LANES, self.n_models))
            lrs = self._no_lr()
            lrs[:len(models)] = lr[models.start:models.stop]
            block_keep = self._no_keep()
            if self.options.dropout:  # (K, N, 192) -> (n, 192, LANES), padded lanes: 1
                block_keep = np.ones((n, k.MAPS * k.N2, k.LANES), self.dtype)
                block_keep[:, :, :len(models)] = np.moveaxis(
                    np.asarray(keep[models.start:models.stop, start:stop]), 0, -1)
            jobs.append((buf, images, labels, block_keep, start, stop, k.TRAIN, lrs,
                         self.options, losses[b]))
        self._run(jobs)
        return losses.transpose(0, 2, 1).reshape(-1, n)[:self.n_models]

    def warm_up(self, images: np.ndarray, log=print) -> None:
        """Compile the kernels for these images (or load them from numba's cache) now, saying
        so when it will take a while, so that compile time is not counted as training."""
        if _compile.needs_compile(self.dtype.name, "lanes"):
            log("preparing the lanes engine (its first run ever compiles it)")
        self.predict(images[:1], [0])

    def predict(self, images: np.ndarray, models=None) -> np.ndarray:
        """Each model's outputs (len(models), N, 10), float64; `models`: a subset, in order.
        In the layout that computes fewer lanes (both give the same bits): the blocks, or
        `_predict_rows` (LANES patterns of one model in the lanes), when the models needed
        leave enough of their blocks' lanes empty (ROWS_COST)."""
        images, models, k = _contiguous(images), self._models(models), self.k
        blocks = sorted({m // k.LANES for m in models})
        if ROWS_COST * len(models) < k.LANES * len(blocks):
            return self._predict_rows(images, models)
        return self._predict_blocks(images, models, blocks)

    def _predict_blocks(self, images, models, blocks) -> np.ndarray:
        """`predict` in the training layout: each block needed runs on copies of its
        parameters (`_predict_buffer`), its patterns split over the threads."""
        n, k = len(images), self.k
        parts = max(1, min(n, self.threads // len(blocks)))
        outs = {b: np.empty((n * k.OUT, k.LANES)) for b in blocks}
        bounds = np.linspace(0, n, parts + 1).astype(int)
        jobs = []
        for b in blocks:
            for part, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                buf = self._predict_buffer(("blocks", b, part))
                buf[:k.NPARAM * k.LANES] = self.bufs[b, :k.NPARAM * k.LANES]
                jobs.append((buf, images, self._no_labels(), self._no_keep(), int(lo),
                             int(hi), k.PREDICT, self._no_lr(), self.eval_options,
                             outs[b][lo * k.OUT:hi * k.OUT]))
        self._run(jobs)
        return np.stack([outs[m // k.LANES].reshape(n, k.OUT, k.LANES)[:, :, m % k.LANES]
                         for m in models])

    def _predict_rows(self, images, models) -> np.ndarray:
        """`predict` with LANES patterns of one model in the lanes
        (`_lanes_kernels.predict_rows`): the (model, LANES patterns) pieces shared evenly by
        the threads, each share in a buffer of its own."""
        n, k, key = len(images), self.k, self._key(images)
        chunks = -(-n // k.LANES)
        out = np.empty((len(models), chunks * k.OUT, k.LANES))
        if not _compile.loaded(key):  # compiled or loaded through `_run` (its helpers)
            self._run([(self._predict_buffer(("rows", 0)), images, self._no_labels(),
                        self._no_keep(), 0, 0, k.PREDICT_ROWS, self._no_lr(),
                        self.eval_options, self._no_out())])
        parts = max(1, min(self.threads, len(models) * chunks))
        bounds = np.linspace(0, len(models) * chunks, parts + 1).astype(int)
        jobs = [(self._predict_share, (part, images, models, out, int(lo), int(hi)))
                for part, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
        _compile.run_jobs(self, jobs, key, _helpers, loop_vectorize=False)
        out = out.reshape(len(models), chunks, k.OUT, k.LANES).transpose(0, 1, 3, 2)
        return np.ascontiguousarray(out.reshape(len(models), chunks * k.LANES, k.OUT)[:, :n])

    def _predict_share(self, part: int, images, models, out, lo: int, hi: int) -> None:
        """Pieces lo..hi of `_predict_rows` (piece i: model models[i // chunks], its chunk
        i % chunks of LANES patterns), model by model."""
        k, buf = self.k, self._predict_buffer(("rows", part))
        xs, chunks = aligned_zeros(k.XSIZE, self.dtype), out.shape[1] // k.OUT  # (rows)
        while lo < hi:
            i, first = divmod(lo, chunks)
            last = min(chunks, first + hi - lo)
            b, lane = divmod(models[i], k.LANES)  # its parameters, in every lane
            buf[:k.NPARAM * k.LANES].reshape(k.NPARAM, k.LANES)[...] = \
                self._rows(b)[:k.NPARAM, lane:lane + 1]
            k.run(buf, xs, self.table, images, self._no_labels(), self._no_keep(),
                  first * k.LANES, min(len(images), last * k.LANES), k.PREDICT_ROWS,
                  self._no_lr(), self.weight_decay, self.eval_options,
                  out[i, first * k.OUT:last * k.OUT])
            lo += last - first

    def _predict_buffer(self, key: tuple) -> np.ndarray:
        """A buffer of the blocks' layout for one share of `predict`'s work, where the forward
        pass writes its activations (not in the training buffer, nor in another share's);
        the caller copies in the parameters, all that the forward pass reads. Kept between
        calls (not a whole block, optimizer state and scratch included, copied into fresh
        memory each call)."""
        if key not in self._predict_buffers:
            self._predict_buffers[key] = aligned_zeros(self.bufs[0].shape, self.dtype)
        return self._predict_buffers[key]

    def params(self, models=None) -> list[dict[str, np.ndarray]]:
        """A copy of each model's parameters (the engine's dtype); `models`: a subset."""
        return [self._get(m) for m in self._models(models)]

    def optimizer_state(self, models=None) -> list[dict[str, np.ndarray]]:
        """As the fast engine's: SDLM's h by parameter name ({} for sgd or before the first
        estimate), or AdamW's moments ("exp_avg.<name>", "exp_avg_sq.<name>") and "step"."""
        k, out = self.k, []
        for m in self._models(models):
            if self.adamw:
                b, lane = divmod(m, k.LANES)
                out.append({**{f"exp_avg.{n}": v for n, v in self._get(m, k.EXP_AVG).items()},
                            **{f"exp_avg_sq.{n}": v
                               for n, v in self._get(m, k.EXP_AVG_SQ).items()},
                            "step": self._rows(b)[k.ADAM_STEP, lane:lane + 1].copy()})
            elif self.sdlm and self.estimated:
                out.append(self._get(m, k.HESS))
            else:
                out.append({})
        return out

    def load_optimizer_state(self, states: list[dict[str, np.ndarray]]) -> None:
        """Restore what `optimizer_state` returned (SDLM's h; {} leaves it un-estimated)."""
        if len(states) != self.n_models:
            raise ConfigError(f"{len(states)} optimizer states for {self.n_models} models")
        if not (self.sdlm or self.adamw) or not any(states):
            return
        k = self.k
        wanted = ([f"{m}.{n}" for m in ("exp_avg", "exp_avg_sq") for n in PARAM_NAMES]
                  + ["step"] if self.adamw else list(PARAM_NAMES))
        for state in states:
            missing = [n for n in wanted if n not in state]
            if missing:
                raise CheckpointError(f"the optimizer state lacks {missing}; resume from a "
                                      f"checkpoint written with optimizer="
                                      f"{self.cfg.train.optimizer}")
        for m, state in enumerate(states):
            b, lane = divmod(m, k.LANES)
            if self.adamw:
                for moment, base in (("exp_avg", k.EXP_AVG), ("exp_avg_sq", k.EXP_AVG_SQ)):
                    self._put(b, lane, {n: state[f"{moment}.{n}"] for n in PARAM_NAMES}, base)
                self._rows(b)[k.ADAM_STEP, lane] = np.asarray(state["step"]).reshape(-1)[0]
            else:
                self._put(b, lane, state, k.HESS)
        if self.sdlm:
            for b in range(len(self.bufs)):
                self._set_inverse(b)
            self.estimated = True

    # --- running the kernels ---------------------------------------------------------------

    def _no_keep(self):
        return np.zeros((0, self.k.MAPS * self.k.N2, self.k.LANES), self.dtype)

    def _no_lr(self):
        return np.zeros(self.k.LANES)

    def _no_labels(self):
        return np.zeros(0, np.int64)

    def _no_out(self):
        return np.zeros((0, self.k.LANES))

    def _run(self, jobs: list) -> None:
        """Run `run` for each job (a block's arguments) on up to `threads` threads (the
        kernels release the GIL), each with its own scratch for the shared input."""
        k = self.k
        jobs = [(buf, np.zeros(k.XSIZE, self.dtype), self.table, images, labels, keep, start,
                 stop, job, lrs, self.weight_decay, o, out)
                for buf, images, labels, keep, start, stop, job, lrs, o, out in jobs]
        # the loop vectoriser off (_compile.vectorizers)
        _compile.run_jobs(self, [(k.run, args) for args in jobs], self._key(jobs[0][3]),
                          _helpers, loop_vectorize=False)

    def _key(self, images: np.ndarray) -> tuple:
        """What `run`'s machine code depends on, for `_compile`: the engine, the weights'
        dtype, the images' dtype."""
        return ("lanes", self.dtype.name, images.dtype.name)


def _contiguous(images: np.ndarray) -> np.ndarray:
    return digit_images(images, "lanes")
