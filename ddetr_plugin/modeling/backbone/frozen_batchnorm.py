"""FrozenBatchNorm2d with a one-pass forward.

torchvision's ``FrozenBatchNorm2d`` computes ``x * scale + bias``: two passes over the
activation and a temporary of its size. ``torch.addcmul(bias, x, scale)`` gives the same
values in one pass. The
buffers, their names and the state dict are torchvision's, so checkpoints are unchanged.
"""
import torch
from torchvision.ops import FrozenBatchNorm2d as _TorchvisionFrozenBatchNorm2d


class FrozenBatchNorm2d(_TorchvisionFrozenBatchNorm2d):
    """BatchNorm2d with fixed statistics and affine parameters (buffers, never trained)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return torch.addcmul(bias.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))
