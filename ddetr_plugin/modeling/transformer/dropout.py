"""``nn.Dropout`` on the package's seeded dropout op (fast on the CPU; see ops/seeded_dropout.py)."""
import torch
from torch import nn

from ddetr_plugin.ops import dropout


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` (no state; not in place) whose CPU path is one parallel pass."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any shape -> same shape."""
        return dropout(x, self.p, self.training)
