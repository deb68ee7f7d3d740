"""DigitsDataset: (image (1, S, S), target) pairs in a fixed order, as the original notebook's."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lecun1989.data.base import DigitData

TARGETS = ("pm1", "label")


class DigitsDataset(Dataset):
    """Images with +-1 target vectors (-1 everywhere, +1 at the label) or integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, targets: str = "pm1",
                 dtype: torch.dtype = torch.float32):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.shape[1] != 1 or len(images) != len(labels):
            raise ValueError(f"expected images (N, 1, S, S) and N labels, got {images.shape} "
                             f"and {labels.shape}")
        if targets not in TARGETS:
            raise ValueError(f"targets={targets!r}: choose one of {', '.join(TARGETS)}")
        self.images = torch.tensor(images, dtype=dtype)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        if len(labels) and not bool(((self.labels >= 0) & (self.labels <= 9)).all()):
            raise ValueError("labels must be digits 0..9")
        if targets == "pm1":
            self.targets = torch.full((len(labels), 10), -1.0, dtype=dtype)
            self.targets[torch.arange(len(labels)), self.labels] = 1.0
        else:
            self.targets = self.labels

    @classmethod
    def from_data(cls, data: DigitData, split: str = "train", **kwargs) -> DigitsDataset:
        """The train or test part of a DigitData."""
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: choose train or test")
        return cls(getattr(data, f"{split}_images"), getattr(data, f"{split}_labels"), **kwargs)

    def __len__(self) -> int:
        """Number of digits."""
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (1, S, S), target (10,) of +-1 or a scalar int64 label)."""
        return self.images[i], self.targets[i]
