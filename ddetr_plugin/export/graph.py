"""The detector as a tensors-in, tensors-out module: what torch.export and ONNX trace.

``forward_raw`` returns nested dicts and lists (aux outputs, two-stage proposals); a
deployed graph needs only the final predictions, optionally already postprocessed.
Inputs are what ``DeformableDETR.preprocess_images`` produces: RGB normalized with
MODEL.PIXEL_MEAN / PIXEL_STD (0-255 scale), zero-padded bottom/right, and the mask.
"""
import math
from typing import Optional

import torch
from torch import nn

from ..modeling.meta_arch import DeformableDETR
from ..modeling.postprocessor import DetectionPostProcessor
from ..modeling.transformer import MSDeformAttn

INPUT_NAMES = ("images", "padding_mask")
POSTPROCESS_INPUT_NAMES = INPUT_NAMES + ("target_sizes",)
OUTPUT_NAMES = ("pred_logits", "pred_boxes")
POSTPROCESS_OUTPUT_NAMES = ("scores", "labels", "boxes")
# export's largest image side; any bound works, this one is far above any detection input
MAX_IMAGE_SIDE = 8192


class DetectorGraph(nn.Module):
    """``DeformableDETR`` on tensors only.

    Args:
        model: the detector (in eval mode).
        postprocessor: when given, the graph also runs its batched top-k (``top_k``; no NMS).

    ``forward(images (B, 3, H, W) float normalized, padding_mask (B, H, W) bool True on padding)``
    returns ``pred_logits`` (B, Q, C) and ``pred_boxes`` (B, Q, 4) normalized cxcywh; with a
    postprocessor, ``forward(images, padding_mask, target_sizes (B, 2) float (height, width))``
    returns ``scores`` (B, K), ``labels`` (B, K) int64 and ``boxes`` (B, K, 4) xyxy pixels of
    ``target_sizes``.
    """

    def __init__(self, model: DeformableDETR, postprocessor: Optional[DetectionPostProcessor] = None):
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    @property
    def input_names(self) -> tuple[str, ...]:
        return POSTPROCESS_INPUT_NAMES if self.postprocessor is not None else INPUT_NAMES

    @property
    def output_names(self) -> tuple[str, ...]:
        return POSTPROCESS_OUTPUT_NAMES if self.postprocessor is not None else OUTPUT_NAMES

    def forward(
        self, images: torch.Tensor, padding_mask: torch.Tensor, target_sizes: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, ...]:
        outputs = self.model.forward_raw(images, padding_mask)
        if self.postprocessor is None:
            return outputs["pred_logits"], outputs["pred_boxes"]
        if target_sizes is None:
            raise ValueError("DetectorGraph with a postprocessor needs target_sizes (B, 2) rows (height, width)")
        return self.postprocessor.top_k(outputs["pred_logits"], outputs["pred_boxes"], target_sizes)

    def example_inputs(self, batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """Random inputs of that size (no padding), on the model's device."""
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, height, width, generator=generator).to(self.model.device)
        padding_mask = torch.zeros(batch, height, width, dtype=torch.bool, device=self.model.device)
        if self.postprocessor is None:
            return images, padding_mask
        sizes = torch.tensor([[height, width]] * batch, dtype=torch.float32, device=self.model.device)
        return images, padding_mask, sizes

    def dynamic_shapes(self) -> tuple[dict, ...]:
        """torch.export ``dynamic_shapes``: batch, height and width of every input are free."""
        smallest = minimum_image_side(self.model)
        batch = torch.export.Dim("batch", min=1, max=1024)
        height = torch.export.Dim("height", min=smallest, max=MAX_IMAGE_SIDE)
        width = torch.export.Dim("width", min=smallest, max=MAX_IMAGE_SIDE)
        shapes = ({0: batch, 2: height, 3: width}, {0: batch, 1: height, 2: width})
        return shapes + ({0: batch},) if self.postprocessor is not None else shapes


def minimum_image_side(model: DeformableDETR) -> int:
    """The smallest image side an exported graph accepts.

    Every feature level must be at least 2 pixels on each side (a size-1 axis would be a special
    case fixed in the graph): one pixel more than the coarsest level's stride. Two-stage models
    also need as many positions as proposals (the top-k over them).
    """
    output_shape = model.backbone.output_shape()
    strides = [output_shape[name].stride for name in model.in_features]
    strides += [strides[-1] * 2 ** (index + 1) for index in range(model.num_feature_levels - len(strides))]
    side = strides[-1] + 1
    if model.two_stage:
        while sum(math.ceil(side / stride) ** 2 for stride in strides) < model.num_queries:
            side += strides[-1]
    return side


def msda_backends(model: nn.Module) -> set[str]:
    """The ``backend`` of every deformable attention module in ``model``."""
    return {module.backend for module in model.modules() if isinstance(module, MSDeformAttn)}
