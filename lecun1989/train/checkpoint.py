"""Checkpoints: safetensors files holding the weights, with the full config in the metadata.

No pickle anywhere: loading a checkpoint can never run code (tests/test_robustness.py feeds
`evaluate` a pickle that would, and checks it did not). A resumable checkpoint also holds
the training state (`TrainState`): optimizer state, the loss history, the position in the
run. Nothing else: every random draw comes from numpy generators seeded by (seed, pass), so a
checkpoint holds no generator state, and two identical runs write identical files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file
from safetensors.numpy import save as to_bytes

from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError, UserError
from lecun1989.model.params import PARAM_NAMES, layer_shapes
from lecun1989.train import rundir

FORMAT = "lecun1989-checkpoint-v2"  # v1 (three metadata keys) is still read
KEY = "lecun1989"  # the one metadata entry: safetensors writes several in a random order
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a pickle (protocol 2+), a torch.save zip


def save(path: str | os.PathLike, cfg: RunConfig, params: dict[str, np.ndarray],
         extra: dict[str, np.ndarray] | None = None, meta: dict | None = None) -> Path:
    """Write atomically: a temporary file, then a rename."""
    path = Path(path)
    tensors = {n: np.ascontiguousarray(params[n]) for n in PARAM_NAMES}
    tensors.update({f"extra/{k}": np.ascontiguousarray(v) for k, v in (extra or {}).items()})
    header = {"format": FORMAT, "config": cfg.to_dict(), "meta": meta or {}}
    rundir.write_bytes(path, to_bytes(tensors, metadata={KEY: json.dumps(header)}))
    return path


def load(path: str | os.PathLike) -> tuple[RunConfig, dict[str, np.ndarray], dict, dict]:
    """(config, params, extra tensors, meta) from a checkpoint; CheckpointError if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / rundir.CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; pass a run folder or its "
                              f"{rundir.CHECKPOINT}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: {_not_safetensors(path, e)}") from None
    try:
        header = _header(metadata)
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a lecun1989 checkpoint (format "
                                  f"{header.get('format')!r}, expected {FORMAT!r})")
        cfg = RunConfig.from_dict(header["config"])
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError(f"meta is a {type(meta).__name__}")
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, UserError) as e:
        raise CheckpointError(f"{path}: its stored config is unreadable ({e}); it is damaged "
                              "or not from lecun1989") from None
    shapes = layer_shapes(cfg.model)
    params = {}
    for name in PARAM_NAMES:
        value = tensors.get(name)
        if value is None or tuple(value.shape) != shapes[name]:
            raise CheckpointError(f"{path}: parameter {name} is missing or has the wrong "
                                  f"shape for its config (expected {shapes[name]}); the file "
                                  "does not match the config stored in it")
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: parameter {name} holds non-finite or non-float "
                                  "values; the file is damaged")
        params[name] = value
    extra = {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    return cfg, params, extra, meta


def _header(metadata: dict) -> dict:
    """{"format", "config", "meta"} from the safetensors metadata (v2, or v1's three keys)."""
    if KEY in metadata:
        header = json.loads(metadata[KEY])
        if not isinstance(header, dict):
            raise TypeError(f"the {KEY} metadata is a {type(header).__name__}")
        return header
    if metadata.get("format") == "lecun1989-checkpoint-v1":
        return {"format": FORMAT, "config": json.loads(metadata["config"]),
                "meta": json.loads(metadata.get("meta", "{}"))}
    return {"format": metadata.get("format")}


def _not_safetensors(path: Path, error: Exception) -> str:
    """Why a file that safetensors cannot read was refused, for the error message."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(PICKLE_MAGIC):
        return ("a pickle (a PyTorch .pt/.pth file?), which lecun1989 never loads because "
                "unpickling can run code; pass a model.safetensors written by lecun1989")
    what = "an empty file" if not head else (
        f"not a safetensors file, or a truncated one ({(str(error).splitlines() or [''])[0]})")
    return f"{what}; pass a model.safetensors written by lecun1989"


@dataclass
class TrainState:
    """Where a run stands, beyond its weights: what `fit` needs to continue exactly."""

    passes_done: int  # complete passes
    sample: int  # patterns of the next pass already trained on (0: at a pass boundary)
    step: int  # updates so far
    engine: str  # the engine that trained it (resumed with the same one)
    data_sha256: str  # of the training and test arrays (resume refuses other data)
    optimizer: dict[str, np.ndarray]  # engine.optimizer_state(), SDLM's h included
    history: list[dict]  # the loss history so far: {"step", "pass", "loss"}
    records_sha256: str = ""  # of metrics.jsonl's records so far (ties it to its folder)
    seconds: float | None = None  # training seconds so far (mid-pass checkpoints only)


def save_state(path: str | os.PathLike, cfg: RunConfig, params: dict[str, np.ndarray],
               state: TrainState) -> Path:
    """A resumable checkpoint (also an ordinary one: `load` and `evaluate` read it)."""
    extra = {f"optimizer/{k}": v for k, v in state.optimizer.items()}
    extra["history"] = np.array([[h["step"], h["pass"], h["loss"]] for h in state.history],
                                dtype=np.float64).reshape(-1, 3)
    meta = {"pass": state.passes_done, "sample": state.sample, "step": state.step,
            "engine": state.engine, "data_sha256": state.data_sha256,
            "records_sha256": state.records_sha256}
    if state.seconds is not None:
        meta["seconds"] = state.seconds
    return save(path, cfg, params, extra, meta)


def load_state(path: str | os.PathLike) -> tuple[RunConfig, dict[str, np.ndarray], TrainState]:
    """(config, params, training state) of a resumable checkpoint; CheckpointError if not."""
    cfg, params, extra, meta = load(path)
    try:
        history = extra["history"]
        state = TrainState(
            passes_done=int(meta["pass"]), sample=int(meta["sample"]), step=int(meta["step"]),
            engine=str(meta["engine"]), data_sha256=str(meta["data_sha256"]),
            optimizer={k[len("optimizer/"):]: v for k, v in extra.items()
                       if k.startswith("optimizer/")},
            history=[{"step": int(s), "pass": int(p), "loss": float(v)} for s, p, v in history],
            records_sha256=str(meta.get("records_sha256", "")), seconds=meta.get("seconds"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: not resumable (it lacks the training state: {e}); "
                              "evaluate it, or start a new run") from None
    if min(state.passes_done, state.sample, state.step) < 0 or state.passes_done > \
            cfg.train.passes:
        raise CheckpointError(f"{path}: its training position (pass {state.passes_done}, "
                              f"sample {state.sample}) is impossible; the file is damaged")
    return cfg, params, state
