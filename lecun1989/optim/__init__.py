"""Update rules the reference engine applies, one pattern at a time: plain SGD, NC89's SDLM
(sdlm.py), AdamW (ablations). The fast engines compute the same rules in their kernels."""

from __future__ import annotations

from lecun1989.optim.rules import SGD, AdamW, make_optimizer
from lecun1989.optim.sdlm import SDLM

__all__ = ["SDLM", "SGD", "AdamW", "make_optimizer"]
