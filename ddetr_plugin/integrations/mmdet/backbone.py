"""Any backbone of mmdet's registry as one of ours (named feature maps with ``output_shape()``)."""
from typing import Sequence

import torch
from mmdet.registry import MODELS
from torch import nn

from ddetr_plugin.modeling.backbone.base import Backbone, ShapeSpec

# input size of the one forward pass that measures the backbone's output strides
_PROBE_SIZE = 128


class MMDetBackbone(Backbone):
    """An mmdet backbone (tuple of feature maps, finest first) with our interface.

    Held as ``body``, so an mmdet ResNet's parameters are named as our ``ResNetBackbone``'s
    (``backbone.body.layer1...``, torchvision's names). Outputs are named ``out0``, ``out1``, ...

    Args:
        body: the mmdet backbone module.
        channels: the channels of each output, as the neck config lists them (``neck.in_channels``);
            checked against one forward pass of a 128x128 input, which also gives the strides.

    Raises:
        ValueError: the backbone's outputs do not have ``channels``.
    """

    def __init__(self, body: nn.Module, channels: Sequence[int]):
        super().__init__()
        self.body = body
        self._shapes = self._probe(list(channels))

    @classmethod
    def build(cls, backbone_cfg: dict, channels: Sequence[int]) -> "MMDetBackbone":
        """Build ``backbone_cfg`` with mmdet's ``MODELS`` registry (any registered backbone)."""
        return cls(MODELS.build(backbone_cfg), channels)

    def _probe(self, channels: list[int]) -> dict[str, ShapeSpec]:
        was_training = self.body.training
        self.body.eval()  # no batch-norm statistics update
        try:
            with torch.no_grad():
                outputs = self.body(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
        finally:
            self.body.train(was_training)
        outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        found = [output.shape[1] for output in outputs]
        if found != channels:
            raise ValueError(f"model.neck.in_channels is {channels} but the backbone ({type(self.body).__name__}) "
                             f"outputs {found} channels; they must agree")
        return {f"out{index}": ShapeSpec(output.shape[1], _PROBE_SIZE // output.shape[-1])
                for index, output in enumerate(outputs)}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) normalized -> {"out{i}": (B, C_i, H / s_i, W / s_i)}."""
        outputs = self.body(images)
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return {f"out{index}": output for index, output in enumerate(outputs)}
