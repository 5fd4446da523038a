"""``nn.Linear`` on the package's linear op (oneDNN's matrix multiply on the CPU; see ops/onednn_linear.py)."""
import torch
from torch import nn

from ddetr_plugin.ops import linear


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and initialisation) that is faster on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        return linear(x, self.weight, self.bias)
