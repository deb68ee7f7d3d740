"""The fast engine: whole chunks of per-sample training inside compiled Numba code.

Same numbers as the reference engine (tests/test_fast_engine.py holds them together step
for step), about 100x faster: a step is ~0.36 MFLOP, so PyTorch's per-call overhead (~1.5 ms
a step) dominates the reference, while here forward, backward and update of a whole chunk
run without returning to Python. `FastEngine.many` trains K models (same data order,
different seeds) at once, one model per core at a time.

    engine = FastEngine(cfg, init_params(cfg.model, cfg.seed))
    losses = engine.train_steps(images, labels, 0, 100, lr=0.03)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError, ConfigError, DataError
from lecun1989.model.net import PARAM_NAMES, layer_shapes
from lecun1989.model.tables import connection_table

_SLP_LOCK = threading.Lock()
_COMPILED: set = set()  # (kernel, dtype, image dtype) compiled or loaded in this process
_EARLY: set = set()  # the dtypes whose compile `_compile_early` started
_HELPERS: set = set()  # _compiler.py processes running now (stopped if this process exits)
# The kernels keep H1's units in phase order (_kernels' docstring): unit (y, x) of a map sits
# at 16 (2 (y % 2) + x % 2) + 4 (y // 2) + x // 2. _PHASE_ORDER[p] is the row-major index there.
_PHASE_ORDER = np.array([8 * (2 * a + ph // 2) + 2 * b + ph % 2
                         for ph in range(4) for a in range(4) for b in range(4)])


def unsupported(cfg: RunConfig) -> str | None:
    """Why the fast engine cannot run `cfg` (one line naming the option), or None."""
    m, t = cfg.model, cfg.train
    checks = [
        (m.input_size == 16, f"model.input_size={m.input_size} (only 16)"),
        (not (m.dropout and t.optimizer == "sdlm"),
         f"model.dropout={m.dropout} with train.optimizer=sdlm (dropout: sgd, adamw)"),
    ]
    for ok, what in checks:
        if not ok:
            return f"the fast engine does not support {what}"
    return None


@contextlib.contextmanager
def _compile_lock():
    """One process at a time compiles the kernels (or loads them from numba's disk cache).

    numba saves a function's compiled versions by reading, extending and rewriting an index
    file without a lock: two processes saving different versions of one function at once
    (sweep workers, test workers, an SGD and an SDLM run) can leave the index naming the
    other's code, which a later process would then load for the wrong version. Waiting here
    also spares the second process the compile: it loads what the first one saved.
    """
    try:
        import fcntl  # noqa: PLC0415 (POSIX)
    except ImportError:  # elsewhere: no lock (as numba itself)
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"lecun1989-numba-{os.getuid()}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _slp_vectorizer():
    """Compile with LLVM's SLP vectoriser on (see _kernels' docstring), one process at a time.

    Numba turns it off by default since numba#8852 (miscompilations in an older LLVM); the
    kernels need it to vectorise their small fixed-size loops, and every result they give
    is checked against PyTorch by the tests. Only compilations started inside this block see
    the setting; kernels loaded from numba's cache are not affected.
    """
    from numba.core import config  # noqa: PLC0415

    with _SLP_LOCK, _compile_lock():
        old = config.SLP_VECTORIZE
        config.SLP_VECTORIZE = 1
        try:
            yield
        finally:
            config.SLP_VECTORIZE = old


class _CompiledElsewhere(Exception):
    """numba was about to compile `run` in this process; helper processes compiled it."""


@contextlib.contextmanager
def _compile_in_helpers(k):
    """When numba starts compiling `run` here (its disk cache lacks `run` for these argument
    types), compile it in helper processes instead (_compiler.py: `forward` and `backward` at
    once on two cores) and raise _CompiledElsewhere: the caller then loads `run` from the
    cache (or, if the helpers failed, compiles it). A process that compiled the kernels runs
    other copies of them than a cached `run` holds, which differ in rounding; this way the
    first-ever run equals every later one, bit for bit. (With no `run` in the cache at all,
    `_compile_early` has started the helpers already.)"""
    from numba.core import event  # noqa: PLC0415

    from lecun1989.engines import _compiler  # noqa: PLC0415

    class Listener(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"] is not k.run:
                return
            args = tuple(ev.data["args"])
            dtypes = str(args[0].dtype), str(args[2].dtype)
            if (set(dtypes) <= set(_compiler.DTYPES) and args == _compiler.run_types(k, *dtypes)
                    and _compile_elsewhere(*dtypes)):
                raise _CompiledElsewhere

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", Listener()):
        yield


def _compile_early(dtype: str) -> None:
    """A first-ever run (numba's cache holds no `run` at all): start the helpers before this
    process imports numba, under the compile lock, for float32 images (every data set's;
    data/base.py), so that their start-up overlaps numba's import here. The first `_run`
    waits for the lock, then loads what they saved (other types: compiled as usual)."""
    if dtype in _EARLY or not _cache_lacks_run() or _helper_python() is None:
        return
    _EARLY.add(dtype)

    def compile_under_lock():
        with _compile_lock():
            if _cache_lacks_run():  # (else another process compiled it meanwhile)
                _compile_elsewhere(dtype, "float32", meanwhile=_load_numba_registries)

    threading.Thread(target=compile_under_lock, name="fast-engine-compile", daemon=True).start()


def _cache_lacks_run() -> bool:
    """True when no folder where numba may keep the kernels' cache holds a `run`, found
    without importing numba (its locators: NUMBA_CACHE_DIR, else __pycache__ beside the
    kernels or the user's cache). A guess that only decides when helpers start: numba
    itself decides what it loads."""
    folder = os.path.dirname(os.path.abspath(Path(__file__).with_name("_kernels.py")))
    sub = f"{os.path.basename(folder)}_{hashlib.sha1(folder.encode()).hexdigest()}"
    if os.environ.get("NUMBA_CACHE_DIR"):
        places = [Path(os.environ["NUMBA_CACHE_DIR"], sub)]
    else:
        user = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        places = [Path(folder, "__pycache__"), Path(user, "numba", sub)]
    return not any(any(place.glob("_kernels.run-*.nbi")) for place in places)


def _helper_python() -> list[str] | None:
    """The command that runs _compiler.py, or None (a frozen app's executable is no Python)."""
    script = Path(__file__).with_name("_compiler.py")
    if not sys.executable or getattr(sys, "frozen", False) or not script.is_file():
        return None
    return [sys.executable, str(script)]


def _compile_elsewhere(dtype: str, image_dtype: str, meanwhile=None) -> bool:
    """Run _compiler.py for `run` with weights of `dtype` and images of `image_dtype`, and
    wait for it: False when it cannot start. meanwhile(): called once a core is free (the
    first of two helpers has finished)."""
    command = _helper_python()
    if command is None:
        return False
    parts = ("forward", "run") if _cores() >= 2 else ("all",)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for part in parts:
                procs.append(subprocess.Popen(
                    [*command, part, os.path.join(tmp, "forward-done"), dtype, image_dtype],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
                _HELPERS.add(procs[-1])
            for p in procs:
                p.wait(timeout=900)
                if meanwhile is not None:
                    with contextlib.suppress(Exception):  # (only to save time: never fatal)
                        meanwhile()
                    meanwhile = None
        except OSError:  # (could not start: when none started, numba compiles right here)
            return bool(procs)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for p in procs:  # after an error or an interrupt: none left running
                if p.poll() is None:
                    p.kill()
                    p.wait()
                _HELPERS.discard(p)
    return True


def _load_numba_registries() -> None:
    """What numba does here before it loads `run` from the cache (0.6 s: it imports its
    typing and lowering registries, and scipy to look for BLAS)."""
    from numba.core.compiler_lock import global_compiler_lock  # noqa: PLC0415
    from numba.core.registry import cpu_target  # noqa: PLC0415

    with global_compiler_lock:
        cpu_target.target_context.refresh()


@atexit.register
def _stop_helpers() -> None:
    """At exit (an early compile may still run in its thread): no helper left behind."""
    for p in list(_HELPERS):
        p.kill()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _kernels():
    from lecun1989.engines import _kernels  # noqa: PLC0415 (numba compiles on first use)

    return _kernels


class FastEngineBatch:
    """K models with the same configuration but their own weights, trained at once.

    Methods return arrays with a leading K axis. Model k's numbers do not depend on K or on
    the other models: seed k of a K-model run equals a single run with seed k, bit for bit.
    """

    name = "fast"

    def __init__(self, cfgs: list[RunConfig], params_list: list[dict[str, np.ndarray]],
                 threads: int | None = None):
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        if not cfgs or len(cfgs) != len(params_list):
            raise ConfigError("FastEngine.many needs one config per parameter set (at least 1)")
        for cfg in cfgs:
            reason = unsupported(cfg)
            if reason:
                raise ConfigError(f"--engine fast: {reason}; use --engine reference")
            if _without_seed(cfg) != _without_seed(cfgs[0]):
                raise ConfigError("the models of one batch may differ in their seed only; "
                                  "train other configurations separately")
        self.cfg = cfg = cfgs[0]
        self.dtype = np.dtype(cfg.model.dtype)
        _compile_early(self.dtype.name)  # before numba's import: a first-ever run
        k = _kernels()
        self.k, m = k, cfg.model
        self.shapes = layer_shapes(m)
        self.table = connection_table(m.table)
        self.unit_bias = m.bias == "unit"  # NC89: one bias per unit; "map": one per map
        relu, f = m.activation == "relu", self.dtype.type
        self.options = k.Options(  # the kernels' view of the configuration
            unit_bias=self.unit_bias, squash_out=bool(m.output_activation), relu=relu,
            ce=cfg.train.loss == "cross_entropy", dropout=bool(m.dropout),
            sgd=cfg.train.optimizer != "adamw", adamw=cfg.train.optimizer == "adamw",
            curvature=False,
            A=f(1 if relu else m.tanh_scale), S=f(1 if relu else m.tanh_slope),
            pad=f(m.pad_value), target=f(cfg.train.target))
        # evaluation mode, and SDLM's estimate (options of the same types: no new compile)
        self.eval_options = self.options._replace(dropout=False, sgd=False, adamw=False)
        self.curvature_options = self.eval_options._replace(curvature=True)
        self.sdlm = cfg.train.optimizer == "sdlm"
        self.adamw = cfg.train.optimizer == "adamw"
        self.weight_decay = float(cfg.train.weight_decay)
        self._no_keep = np.zeros((0, k.MAPS * k.N2), self.dtype)  # for jobs that read none
        self._no_labels, self._no_out = np.zeros(0, np.int64), np.zeros((0, k.OUT))
        self.mu = self.dtype.type(cfg.train.sdlm_mu)
        self.estimated = False  # SDLM: h holds an estimate
        self.bufs = _aligned_zeros((len(cfgs), k.SIZE), self.dtype)
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

    def train_steps(self, images, labels, start: int, stop: int, lr: float,
                    keep: np.ndarray | None = None) -> np.ndarray:
        """One update per pattern images[start:stop] for each model; losses (K, stop-start).
        keep: the pass's dropout masks (N, 192), `train.loop.dropout_keep`."""
        images, labels = _contiguous(images), np.ascontiguousarray(labels, dtype=np.int64)
        if self.options.dropout:
            if keep is None or keep.shape != (len(labels), self.k.MAPS * self.k.N2):
                raise ConfigError("model.dropout needs the pass's keep-masks: train_steps(..., "
                                  "keep=dropout_keep(cfg, pass_index, len(labels)))")
            keep = np.ascontiguousarray(keep, dtype=self.dtype)
        losses = np.empty((len(self.bufs), stop - start, 1))
        self._run([(self.k.run, (buf, self.table, images, labels,
                                 self._no_keep if keep is None else keep, start, stop,
                                 self.k.TRAIN, float(lr), self.weight_decay, self.options, loss))
                   for buf, loss in zip(self.bufs, losses, strict=True)])
        return losses[:, :, 0]

    def predict(self, images: np.ndarray, models=None, block: int = 512) -> np.ndarray:
        """Each model's outputs (K, N, 10), float64; `models`: a subset, in that order."""
        images, models = _contiguous(images), _models(models, len(self.bufs))
        out = np.empty((len(models), len(images), self.k.OUT))
        self._run([(self.k.run, (_aligned_copy(self.bufs[m]), self.table, images,
                                 self._no_labels, self._no_keep, first,
                                 min(first + block, len(images)), self.k.PREDICT, 0.0, 0.0,
                                 self.eval_options, model_out[first:first + block]))
                   for m, model_out in zip(models, out, strict=True)
                   for first in range(0, len(images), block)])
        return out

    def _run(self, jobs: list) -> None:
        """Run (kernel, args) jobs on up to `threads` threads (the kernels release the GIL)."""
        kernel, args = jobs[0]
        key = (kernel.__name__, self.dtype, args[2].dtype)  # what the kernel's types depend on
        if key not in _COMPILED:  # the first call compiles (or loads numba's cache), once
            with _slp_vectorizer():
                try:
                    with _compile_in_helpers(self.k):
                        kernel(*args)
                except _CompiledElsewhere:
                    kernel(*args)  # loads what the helpers saved
            _COMPILED.add(key)
            jobs = jobs[1:]
        if self.threads == 1 or len(jobs) <= 1:
            for kernel, args in jobs:
                kernel(*args)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fast-engine")
        for future in [self._pool.submit(kernel, *args) for kernel, args in jobs]:
            future.result()

    def params(self, models=None) -> list[dict[str, np.ndarray]]:
        """A copy of each model's parameters (the engine's dtype); `models`: a subset."""
        return [self._get(self.bufs[m]) for m in _models(models, len(self.bufs))]

    def optimizer_state(self, models=None) -> list[dict[str, np.ndarray]]:
        """Each model's SDLM h by parameter name ({} for sgd or before the first estimate), or
        AdamW's moments ("exp_avg.<name>", "exp_avg_sq.<name>") and "step"."""
        k, models = self.k, _models(models, len(self.bufs))
        if self.adamw:
            return [{**{f"exp_avg.{n}": v for n, v in self._get(self.bufs[m], k.EXP_AVG).items()},
                     **{f"exp_avg_sq.{n}": v
                        for n, v in self._get(self.bufs[m], k.EXP_AVG_SQ).items()},
                     "step": self.bufs[m, k.ADAM_STEP:k.ADAM_STEP + 1].copy()} for m in models]
        if not (self.sdlm and self.estimated):
            return [{} for _ in models]
        return [self._get(self.bufs[m], k.HESS) for m in models]

    def model(self, index: int) -> ModelView:
        """Model `index` on its own, for what reads one model (evaluation, checkpoints)."""
        return ModelView(self, index)

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


class FastEngine:
    """The Engine protocol (engines/base.py) for one model: a FastEngineBatch of one."""

    name = "fast"

    def __init__(self, cfg: RunConfig, params: dict[str, np.ndarray]):
        self.cfg = cfg
        self.batch = FastEngineBatch([cfg], [params])

    @staticmethod
    def many(cfgs: list[RunConfig], params_list: list[dict[str, np.ndarray]],
             threads: int | None = None) -> FastEngineBatch:
        """K models (configs differing in their seed only) trained together on `threads`
        threads (default: all cores)."""
        return FastEngineBatch(cfgs, params_list, threads)

    def begin_pass(self, pass_index, images, labels) -> None:
        self.batch.begin_pass(pass_index, images, labels)

    def train_steps(self, images, labels, start, stop, lr, keep=None) -> np.ndarray:
        return self.batch.train_steps(images, labels, start, stop, lr, keep)[0]

    def predict(self, images) -> np.ndarray:
        return self.batch.predict(images)[0]

    def params(self) -> dict[str, np.ndarray]:
        return self.batch.params()[0]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.batch.optimizer_state()[0]

    def load_optimizer_state(self, state) -> None:
        self.batch.load_optimizer_state([state])


class ModelView:
    """One model of a FastEngineBatch, read-only: predict, params, optimizer_state."""

    name = "fast"

    def __init__(self, batch: FastEngineBatch, index: int):
        self.batch, self.index = batch, index

    def predict(self, images) -> np.ndarray:
        return self.batch.predict(images, [self.index])[0]

    def params(self) -> dict[str, np.ndarray]:
        return self.batch.params([self.index])[0]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.batch.optimizer_state([self.index])[0]


def _aligned_zeros(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """Zeros starting at a multiple of `align` bytes (numpy only promises 16): the kernels'
    regions are laid out 64-byte aligned from there (_kernels._after); with numpy's own
    alignment a run was 15% slower or not depending on where malloc put it."""
    dtype = np.dtype(dtype)
    raw = np.zeros(int(np.prod(shape)) * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    out = _aligned_zeros(a.shape, a.dtype)
    out[...] = a
    return out


def _models(models, k: int) -> list[int]:
    return list(range(k)) if models is None else [int(m) for m in models]


def _without_seed(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    d.pop("seed")
    return d


def _contiguous(images: np.ndarray) -> np.ndarray:
    """(N, 1, 16, 16) C-ordered; float32 stays float32 (the kernels cast per pixel)."""
    images = np.ascontiguousarray(images)
    if images.ndim != 4 or images.shape[1:] != (1, 16, 16):
        raise DataError(f"the fast engine takes images of shape (N, 1, 16, 16), got "
                        f"{images.shape}; use 16x16 digits (model.input_size=16)")
    if images.dtype not in (np.float32, np.float64):
        images = images.astype(np.float32)
    return images
