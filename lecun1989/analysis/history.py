"""Training histories, written into the run folder while training runs, and their readers.

    fit(cfg, data, out, callbacks=[HistoryRecorder(out, cfg)])

loss.jsonl     the mean loss of every `train.loss_every` steps, appended once a pass
params.jsonl   a fixed-size histogram of every parameter tensor every `train.history_every`
               steps (and at step 0 and the end): a few KB a record, whatever the run's
               length (the notebook kept full float64 snapshots: gigabytes); appended once
               a pass and before a mid-pass checkpoint (`on_checkpoint`)
snapshots.bin  optional full parameter snapshots every `train.snapshot_every` steps, raw
               little-endian values one record after another (39 KB each in float32);
               snapshots.json says how to read them
pass_weights.safetensors
               every parameter after each pass, as trained (tensor "<name>" of shape
               (passes done + 1, *shape); row 0 the initial weights): what the demo page's
               pass slider and the pictures of learning over time draw (23 x 9,760 numbers).
               Written when the run ends (and when it stops mid-pass); while it trains, each
               pass's weights are appended to pass_weights.bin (raw little-endian rows,
               pass_weights.json says how to read them): a pass writes its 9,760 numbers,
               not every pass's again. `read_pass_weights` reads whichever is current.
Steps count patterns presented; "pass" is 1-based (0: the initial weights).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from lecun1989 import files
from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError
from lecun1989.model.params import PARAM_NAMES, init_params
from lecun1989.train import rundir

LOSS, PARAMS, SNAPSHOTS, SNAPSHOT_INDEX = "loss.jsonl", "params.jsonl", "snapshots.bin", \
    "snapshots.json"
PASS_WEIGHTS = "pass_weights.safetensors"
PASS_ROWS, PASS_ROWS_INDEX = "pass_weights.bin", "pass_weights.json"  # while training
FILES = (LOSS, PARAMS, SNAPSHOTS, SNAPSHOT_INDEX, PASS_WEIGHTS, PASS_ROWS, PASS_ROWS_INDEX)
BINS = 64  # histogram bins per tensor and record


def histogram(values: np.ndarray, bins: int = BINS) -> dict:
    """A tensor's distribution in fixed size: range, moments and `bins` equal-width counts."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    counts = np.histogram(v, bins=bins, range=(lo, hi) if hi > lo else (lo - 0.5, hi + 0.5))[0]
    return {"min": lo, "max": hi, "mean": float(v.mean()), "std": float(v.std()),
            "counts": counts.tolist()}


def histograms(tensors: list, bins: int = BINS) -> list[dict]:
    """`histogram` of each tensor, equal to it value for value, in a few numpy calls for all
    the tensors of one size (a run records its 8 tensors every `history_every` steps, a
    K-model run K copies of each at once: `_params_record`; np.histogram's own overhead per
    call was most of one tensor's cost): np.histogram's equal-width binning, row by row of
    the stacked tensors, and their moments along the rows (numpy sums each row as it sums
    the tensor alone)."""
    vs = [np.asarray(t, dtype=np.float64).ravel() for t in tensors]
    out: list[dict | None] = [None] * len(vs)
    by_size: dict[int, list[int]] = {}
    for i, v in enumerate(vs):
        by_size.setdefault(v.size, []).append(i)
    for size, which in by_size.items():
        if size:
            for i, record in zip(which, _histogram_rows(np.stack([vs[i] for i in which]),
                                                        bins), strict=True):
                out[i] = record
    # the rest (empty or unusual tensors) as `histogram` does them: np.histogram's own
    # result, or its error, the first tensor's in list order
    return [r if r is not None else histogram(v, bins) for r, v in zip(out, vs, strict=True)]


def _histogram_rows(rows: np.ndarray, bins: int) -> list[dict | None]:
    """`histogram` of each row of `rows` (n, size); all None when a row is one that
    np.histogram itself must handle (a non-finite value, a range too narrow for `bins`
    distinct edges): rare, and `histogram` then gives each row's record or error."""
    lo, hi = rows.min(axis=1), rows.max(axis=1)
    flat = hi <= lo
    first, last = np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)
    with np.errstate(invalid="ignore"):
        edges = np.linspace(first, last, bins + 1, axis=-1)  # np.histogram's own bin edges
        usable = (np.isfinite(lo) & np.isfinite(hi) & np.all(np.isfinite(edges), axis=1)
                  & np.all(np.diff(edges, axis=1) > 0, axis=1))
    if not np.all(usable):
        return [None] * len(rows)
    # np.histogram's uniform-bin path, element by element with its row's range
    indices = ((rows - first[:, None]) / (last - first)[:, None] * bins).astype(np.intp)
    indices[indices == bins] -= 1
    indices[rows < np.take_along_axis(edges, indices, axis=1)] -= 1
    indices[(rows >= np.take_along_axis(edges, indices + 1, axis=1))
            & (indices != bins - 1)] += 1
    counts = np.bincount((indices + (np.arange(len(rows)) * bins)[:, None]).ravel(),
                         minlength=len(rows) * bins).reshape(len(rows), bins)
    return [{"min": a, "max": b, "mean": m, "std": s, "counts": c}
            for a, b, m, s, c in zip(lo.tolist(), hi.tolist(), rows.mean(axis=1).tolist(),
                                     rows.std(axis=1).tolist(), counts.tolist(), strict=True)]


def _by_name(params: dict, bins: int) -> dict:
    """{name: `histogram` of params[name]} in PARAM_NAMES order (one `histograms` call)."""
    return dict(zip(PARAM_NAMES, histograms([params[n] for n in PARAM_NAMES], bins),
                    strict=True))


# `_params_record`'s last, per thread: (a weak reference to the engine: a finished engine is
# not kept alive, nor its id mistaken for a new one's; the step; bins), every model's
# parameters, their histograms
_shared = threading.local()


def _params_record(engine, step: int, bins: int) -> tuple[dict, dict]:
    """(the model's parameters, their `histograms` by name) at `step`. For model k of a
    K-model engine (a ModelView) every model's at once, kept for the other K - 1 recorders,
    which ask at the same step: one `histograms` call for K models' tensors (20 models: 2.5
    times faster than 20 calls, BENCHMARKS.md)."""
    group = getattr(engine, "engine", None)
    if group is None or len(getattr(group, "cfgs", ())) < 2:
        params = engine.params()
        return params, _by_name(params, bins)
    ref, at_step, at_bins = getattr(_shared, "key", (None, None, None))
    if ref is None or ref() is not group or (at_step, at_bins) != (step, bins):
        _shared.params = group.params()
        _shared.tensors = histograms([p[n] for p in _shared.params for n in PARAM_NAMES],
                                     bins)
        _shared.key = (weakref.ref(group), step, bins)
    k, width = engine.index, len(PARAM_NAMES)
    return _shared.params[k], dict(zip(PARAM_NAMES, _shared.tensors[k * width:(k + 1) * width],
                                       strict=True))


def _crossed(step: int, last: int, every: int) -> bool:
    """True when (last, step] holds a multiple of `every`."""
    return every > 0 and step // every > last // every


class HistoryRecorder:
    """A `fit` callback writing loss.jsonl, params.jsonl and optional snapshots into `out`.

    Works with any engine: it only calls `engine.params()` at chunk boundaries. The files
    are (re)created at the first step, so `fit(..., overwrite=True)` starts them afresh.
    """

    concurrent = True  # writes only into its own model's folder: `fit` may call it on a
    # thread beside other models' recorders (train.loop._each_model)

    def __init__(self, out: str | os.PathLike, cfg: RunConfig, bins: int = BINS):
        self.out, self.cfg, self.bins = Path(out), cfg, bins
        self.passes = cfg.train.passes
        self._pending: list[dict] = []  # loss records of the current pass
        self._pending_params: list[dict] = []  # params records not yet written
        self._last_params = self._last_snapshot = 0
        self._started = False

    def _initial(self) -> dict[str, np.ndarray]:
        """The initial weights (fit starts from init_params), in the model's dtype."""
        initial = init_params(self.cfg.model, self.cfg.seed)
        return {k: v.astype(self.cfg.model.dtype) for k, v in initial.items()}

    def _start(self) -> None:
        """Truncate the files and record the initial weights."""
        for name in FILES:
            (self.out / name).unlink(missing_ok=True)
        initial = self._initial()
        self._record_params(0, 0, _by_name(initial, self.bins))
        _start_pass_rows(self.out, [initial])
        if self.cfg.train.snapshot_every:
            self._snapshot(0, initial)
        self._started = True

    def on_steps(self, step: int, pass_index: int, losses: np.ndarray, engine) -> None:
        """Called by `fit` every `train.loss_every` steps."""
        if not self._started:
            self._start()
        self._pending.append({"step": step, "pass": pass_index + 1,
                              "loss": float(np.mean(losses))})
        t = self.cfg.train
        params = None
        if _crossed(step, self._last_params, t.history_every):
            params, tensors = _params_record(engine, step, self.bins)
            self._record_params(step, pass_index + 1, tensors)
        if _crossed(step, self._last_snapshot, t.snapshot_every):
            self._snapshot(step, params if params is not None else engine.params())

    def on_resume(self, step: int, passes_done: int, history: list[dict]) -> None:
        """Called by `fit(..., resume=True)`: keep the records up to `step`, append after it.

        loss.jsonl is rewritten from the checkpoint's loss history, which also holds the
        losses of an interrupted pass that were not yet flushed.
        """
        _rewrite_lines(self.out / LOSS, [{"step": h["step"], "pass": h["pass"] + 1,
                                          "loss": h["loss"]} for h in history
                                         if h["step"] <= step])
        params = [r for r in read_jsonl(self.out / PARAMS) if r["step"] <= step]
        if not params or params[0]["step"] != 0:  # killed before the first record was written
            params.insert(0, {"step": 0, "pass": 0, "tensors": {
                n: histogram(v, self.bins) for n, v in self._initial().items()}})
        _rewrite_lines(self.out / PARAMS, params)
        index_path = self.out / SNAPSHOT_INDEX
        if self.cfg.train.snapshot_every and not index_path.exists():  # killed before it
            (self.out / SNAPSHOTS).unlink(missing_ok=True)
            self._snapshot(0, self._initial())
        if index_path.exists():
            index = json.loads(index_path.read_text())
            index["steps"] = [s for s in index["steps"] if s <= step]
            per_record = sum(int(np.prod(s)) for s in index["shapes"])
            size = len(index["steps"]) * per_record * np.dtype(index["dtype"]).itemsize
            with open(self.out / SNAPSHOTS, "ab") as f:
                f.truncate(size)
            rundir.write_json(index_path, index)
        self._pending, self._pending_params = [], []
        self._last_params = self._last_snapshot = step
        weights = read_pass_weights(self.out)[:passes_done + 1] or [self._initial()]
        if len(weights) != passes_done + 1:  # written before this file existed
            raise CheckpointError(f"{self.out / PASS_WEIGHTS}: holds {len(weights)} passes' "
                                  f"weights, the checkpoint {passes_done}; start the run again")
        if passes_done >= self.passes:  # (killed after its last pass, before its summary)
            _end_pass_rows(self.out, weights)
        else:
            _start_pass_rows(self.out, weights)
        self._started = True

    def on_pass(self, pass_index: int, metrics: dict, engine) -> None:
        """Called by `fit` after each pass: flush the pass's losses and parameter records;
        record the final weights."""
        _append_lines(self.out / LOSS, self._pending)
        self._pending = []
        step = metrics["step"]
        params = engine.params()
        if pass_index + 1 == self.passes and self._last_params < step:
            self._record_params(step, pass_index + 1, _by_name(params, self.bins))
        self._flush_params()
        # appended, not held (memory flat in passes) nor rewritten whole every pass
        # (safetensors has no append: all passes' weights again, 20 models' x 23 passes
        # 230 MB); the safetensors file from them at the end
        _append_pass_row(self.out, params)
        if pass_index + 1 == self.passes:
            _end_pass_rows(self.out, read_pass_weights(self.out))

    def on_checkpoint(self, step: int, pass_index: int) -> None:
        """Called by `fit` before a mid-pass checkpoint (a stop): write the records held
        (the resumed run appends after the checkpoint's step; the losses come back from the
        checkpoint itself, `on_resume`); pass_weights.safetensors as far as the run has
        come, for what reads a stopped run (the demo page, the plots)."""
        self._flush_params()
        if (self.out / PASS_ROWS_INDEX).exists():
            _write_pass_weights(self.out, read_pass_weights(self.out))

    def _record_params(self, step: int, pass_number: int, tensors: dict) -> None:
        """A params.jsonl record of the tensors' histograms (by name), held until the pass
        ends (one write and one flush to disk a pass rather than one every `history_every`
        steps)."""
        self._pending_params.append({"step": step, "pass": pass_number, "tensors": tensors})
        self._last_params = step

    def _flush_params(self) -> None:
        rundir.extend_jsonl(self.out / PARAMS, self._pending_params)
        self._pending_params = []

    def _snapshot(self, step: int, params: dict) -> None:
        """Append every parameter, flattened, to snapshots.bin; then update its index."""
        dtype = np.dtype(self.cfg.model.dtype)
        rundir.append_bytes(self.out / SNAPSHOTS, _row_bytes(params, dtype))
        index_path = self.out / SNAPSHOT_INDEX
        index = json.loads(index_path.read_text()) if index_path.exists() else {
            **_rows_index(params, dtype), "steps": []}
        index["steps"].append(step)
        rundir.write_json(index_path, index)
        self._last_snapshot = step


def _rows_index(params: dict, dtype: np.dtype) -> dict:
    """How to read rows of `_row_bytes` (snapshots.json, pass_weights.json)."""
    return {"dtype": np.dtype(dtype).name, "byteorder": "little", "names": list(PARAM_NAMES),
            "shapes": [list(np.shape(params[n])) for n in PARAM_NAMES]}


def _row_bytes(params: dict, dtype) -> bytes:
    """Every parameter, flattened in PARAM_NAMES order, little-endian (one raw row)."""
    little = np.dtype(dtype).newbyteorder("<")
    return np.concatenate([np.asarray(params[n], dtype=little).ravel()
                           for n in PARAM_NAMES]).tobytes()


def _rows(path: Path, index: dict, limit: int | None = None) -> dict[str, np.ndarray]:
    """{name: array (rows, *shape)} of a file of `_row_bytes` rows, memory-mapped: its
    complete rows (a torn last one, a kill mid-append, left out), at most `limit`."""
    dtype = np.dtype(index["dtype"]).newbyteorder("<" if index["byteorder"] == "little" else ">")
    sizes = [int(np.prod(s)) for s in index["shapes"]]
    n = path.stat().st_size // (sum(sizes) * dtype.itemsize)
    n = n if limit is None else min(n, limit)
    if n == 0:
        return {name: np.zeros((0, *shape), dtype) for name, shape in
                zip(index["names"], index["shapes"], strict=True)}
    flat = np.memmap(path, dtype=dtype, mode="r", shape=(n, sum(sizes)))
    out, offset = {}, 0
    for name, shape, size in zip(index["names"], index["shapes"], sizes, strict=True):
        out[name] = flat[:, offset:offset + size].reshape(n, *shape)
        offset += size
    return out


def _start_pass_rows(out: Path, weights: list[dict]) -> None:
    """pass_weights.bin holding these rows (and its index), replacing any before."""
    dtype = np.asarray(weights[0][PARAM_NAMES[0]]).dtype
    rundir.write_json(out / PASS_ROWS_INDEX, _rows_index(weights[0], dtype))
    rundir.write_bytes(out / PASS_ROWS, b"".join(_row_bytes(w, dtype) for w in weights))


def _append_pass_row(out: Path, params: dict) -> None:
    rundir.append_bytes(out / PASS_ROWS, _row_bytes(params, np.asarray(
        params[PARAM_NAMES[0]]).dtype))


def _end_pass_rows(out: Path, weights: list[dict]) -> None:
    """pass_weights.safetensors from the rows; the rows' files removed after it."""
    _write_pass_weights(out, weights)
    for name in (PASS_ROWS, PASS_ROWS_INDEX):
        (out / name).unlink(missing_ok=True)


def _read_pass_rows(run_dir: Path) -> list[dict[str, np.ndarray]]:
    """The complete rows of pass_weights.bin (a torn last one, a kill mid-append, dropped)."""
    index_path = run_dir / PASS_ROWS_INDEX
    try:
        index = json.loads(index_path.read_text())
        columns = _rows(run_dir / PASS_ROWS, index)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: unreadable ({e}); train the run again to "
                              "rewrite it") from None
    if index["names"] != list(PARAM_NAMES):
        raise CheckpointError(f"{index_path}: names {index['names']}, expected "
                              f"{list(PARAM_NAMES)}")
    n = len(columns[PARAM_NAMES[0]])
    return [{name: np.array(columns[name][p], dtype=columns[name].dtype.newbyteorder("="))
             for name in PARAM_NAMES} for p in range(n)]


def _write_pass_weights(out: Path, weights: list[dict]) -> None:
    """pass_weights.safetensors from a list of parameter sets (row p: after pass p)."""
    from safetensors.numpy import save

    stacked = {n: np.ascontiguousarray(np.stack([w[n] for w in weights])) for n in PARAM_NAMES}
    rundir.write_bytes(out / PASS_WEIGHTS, save(stacked))


_append_lines = files.extend_jsonl  # a pass's worth of loss records, one flush
_rewrite_lines = files.write_jsonl  # replaced atomically


# --- readers -----------------------------------------------------------------------------

read_jsonl = files.read_jsonl  # the complete records; a torn last line (a kill) is dropped


def read_loss(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """loss.jsonl as arrays: step, pass (1-based) and mean loss."""
    records = read_jsonl(Path(run_dir) / LOSS)
    return {k: np.array([r[k] for r in records], dtype=float if k == "loss" else int)
            for k in ("step", "pass", "loss")}


def read_param_history(run_dir: str | os.PathLike) -> list[dict]:
    """params.jsonl's records: {"step", "pass", "tensors": {name: histogram}}."""
    return read_jsonl(Path(run_dir) / PARAMS)


def param_density(records: list[dict], name: str, bins: int = BINS):
    """(steps, value edges, density (bins, records)) of one tensor on a common value grid.

    Each record's histogram has its own range; its counts are spread over the common bins
    by interpolating its cumulative count (values uniform within a bin).
    """
    hists = [r["tensors"][name] for r in records]
    lo, hi = min(h["min"] for h in hists), max(h["max"] for h in hists)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    density = np.zeros((bins, len(hists)))
    for j, h in enumerate(hists):
        counts = np.asarray(h["counts"], dtype=float)
        if h["max"] > h["min"]:
            own = np.linspace(h["min"], h["max"], len(counts) + 1)
            cdf = np.interp(edges, own, np.concatenate([[0.0], np.cumsum(counts)]))
        else:  # every value equal (e.g. biases at zero)
            cdf = np.where(edges > h["min"], counts.sum(), 0.0)  # values below each edge
            cdf[-1] = counts.sum()
        density[:, j] = np.diff(cdf) / counts.sum()
    return np.array([r["step"] for r in records]), edges, density


def read_pass_weights(run_dir: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The parameters after each pass: item p holds them after pass p (item 0: the initial
    weights); [] when the run kept none (runs written before the file existed). A run that
    is training (or was killed) has them in pass_weights.bin, newer than any .safetensors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if (Path(run_dir) / PASS_ROWS_INDEX).is_file():
        return _read_pass_rows(Path(run_dir))
    path = Path(run_dir) / PASS_WEIGHTS
    if not path.is_file():
        return []
    try:
        stacked = load(path.read_bytes())
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); "
                              "train the run again to rewrite it") from None
    if set(stacked) != set(PARAM_NAMES):
        raise CheckpointError(f"{path}: holds {sorted(stacked)}, expected {list(PARAM_NAMES)}")
    rows = {len(v) for v in stacked.values()}
    if len(rows) != 1:
        raise CheckpointError(f"{path}: its tensors hold different numbers of passes")
    return [{n: stacked[n][p] for n in PARAM_NAMES} for p in range(rows.pop())]


def read_snapshots(run_dir: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(steps, {name: array (records, *shape)}) of snapshots.bin, memory-mapped."""
    run_dir = Path(run_dir)
    index_path = run_dir / SNAPSHOT_INDEX
    if not index_path.exists():
        return np.zeros(0, dtype=int), {}
    index = json.loads(index_path.read_text())
    # the indexed records only (a killed run may have one more on disk, unindexed)
    out = _rows(run_dir / SNAPSHOTS, index, limit=len(index["steps"]))
    n = len(out[index["names"][0]])
    if n == 0:
        return np.zeros(0, dtype=int), {}
    return np.array(index["steps"][:n]), out
