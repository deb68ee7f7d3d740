"""What every training engine provides; the shared driver (train/loop.py) does the rest.

An engine owns the weights and the optimizer state during training. Engines exchange
parameters as float64-or-native numpy arrays keyed by `model.PARAM_NAMES`, start from
the same `init_params`, and must produce the same numbers (tests hold them together).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """The interface of an engine (reference: PyTorch eager; fast: compiled whole passes)."""

    name: str

    def begin_pass(self, pass_index: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Called before each pass (SDLM re-estimates its second derivatives here)."""

    def train_steps(self, images: np.ndarray, labels: np.ndarray, start: int, stop: int,
                    lr: float, keep: np.ndarray | None = None) -> np.ndarray:
        """One update per pattern images[start:stop], in order; returns each pattern's loss.
        keep: the pass's dropout masks (N, 192) from train.loop.dropout_keep (dropout only)."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The network's outputs, shape (N, 10), float64."""

    def params(self) -> dict[str, np.ndarray]:
        """A copy of the current parameters."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's state (e.g. SDLM's second-derivative estimates), for checkpoints."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `optimizer_state` returned."""
