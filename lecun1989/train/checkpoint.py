"""Checkpoints: safetensors files holding the weights, with the full config in the metadata.

No pickle anywhere: loading a checkpoint can never run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from lecun1989.config import RunConfig
from lecun1989.errors import CheckpointError, UserError
from lecun1989.model.net import PARAM_NAMES, layer_shapes

FORMAT = "lecun1989-checkpoint-v1"


def save(path: str | os.PathLike, cfg: RunConfig, params: dict[str, np.ndarray],
         extra: dict[str, np.ndarray] | None = None, meta: dict | None = None) -> Path:
    """Write atomically: a temporary file, then a rename."""
    path = Path(path)
    tensors = {n: np.ascontiguousarray(params[n]) for n in PARAM_NAMES}
    tensors.update({f"extra/{k}": np.ascontiguousarray(v) for k, v in (extra or {}).items()})
    metadata = {"format": FORMAT, "config": json.dumps(cfg.to_dict()),
                "meta": json.dumps(meta or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike) -> tuple[RunConfig, dict[str, np.ndarray], dict, dict]:
    """(config, params, extra tensors, meta) from a checkpoint; CheckpointError if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; pass a run folder or its "
                              "model.safetensors")
    try:
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a lecun1989 checkpoint (a safetensors file "
                              f"written by lecun1989 is expected): {str(e).splitlines()[0]}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lecun1989 checkpoint (format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        cfg = RunConfig.from_dict(json.loads(metadata["config"]))
        meta = json.loads(metadata.get("meta", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError, UserError) as e:
        raise CheckpointError(f"{path}: its stored config is unreadable ({e})") from e
    shapes = layer_shapes(cfg.model)
    params = {}
    for name in PARAM_NAMES:
        if name not in tensors or tuple(tensors[name].shape) != shapes[name]:
            raise CheckpointError(f"{path}: parameter {name} is missing or has the wrong "
                                  f"shape for its config (expected {shapes[name]})")
        params[name] = tensors[name]
    extra = {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    return cfg, params, extra, meta
