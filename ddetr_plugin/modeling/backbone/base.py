"""What every backbone provides: named feature maps and their channels and strides."""
from typing import NamedTuple

import torch
from torch import nn


class ShapeSpec(NamedTuple):
    """Channels of a feature map and its stride (input pixels per feature-map pixel)."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class of backbones: ``forward(images)`` returns the feature maps named in ``output_shape()``.

    A backbone registered in ``BACKBONE_REGISTRY`` is chosen by ``MODEL.BACKBONE.NAME``;
    the detector reads ``output_shape()`` to size its input projections, in the
    order the features are listed there (finest first).
    """

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) normalised -> {name: (B, C_name, H / stride, W / stride)}."""
        raise NotImplementedError

    def output_shape(self) -> dict[str, ShapeSpec]:
        raise NotImplementedError
