"""Turn raw Deformable DETR outputs into per-image detections.

Scores are per (query, class) sigmoids, so one query may yield several detections
with different labels; the top ``num_detections`` pairs over queries x classes are
kept, as in the official implementation.
"""
from typing import Dict, List, Sequence, Union

import torch
from torch import nn
from torchvision.ops import box_convert

from ..registry import POSTPROCESSOR_REGISTRY


@POSTPROCESSOR_REGISTRY.register()
class DetectionPostProcessor(nn.Module):
    """Top-k (query, class) detections with boxes in absolute xyxy pixels.

    Boxes are not clipped to the image, exactly like the official postprocessing,
    so that outputs stay comparable to it; clip them downstream if needed.

    Args:
        num_detections: detections kept per image (fewer when Q * C is smaller).
    """

    def __init__(self, num_detections: int = 100) -> None:
        super().__init__()
        if num_detections < 1:
            raise ValueError(f"DetectionPostProcessor: num_detections must be >= 1, got {num_detections}")
        self.num_detections = num_detections

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {"num_detections": cfg.TEST.DETECTIONS_PER_IMAGE}

    def extra_repr(self) -> str:
        return f"num_detections={self.num_detections}"

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], target_sizes: Union[torch.Tensor, Sequence[Sequence[int]]]
    ) -> List[Dict[str, torch.Tensor]]:
        """
        Args:
            outputs: "pred_logits" (B, Q, C) and "pred_boxes" (B, Q, 4) normalized cxcywh.
            target_sizes: (B, 2) rows (height, width) of the image each prediction is scaled to.

        Returns:
            B dicts with "scores" (K,) in decreasing order, "labels" (K,) int64 and "boxes" (K, 4)
            xyxy in pixels of ``target_sizes``, K = min(num_detections, Q * C).
        """
        logits, pred_boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch, num_queries, num_classes = logits.shape
        sizes = torch.as_tensor(target_sizes, device=pred_boxes.device)
        if sizes.shape != (batch, 2):
            raise ValueError(
                f"DetectionPostProcessor: target_sizes must have shape ({batch}, 2) rows (height, width), "
                f"got {tuple(sizes.shape)}"
            )
        num_keep = min(self.num_detections, num_queries * num_classes)
        scores, flat_idx = logits.sigmoid().reshape(batch, -1).topk(num_keep, dim=1)
        query_idx = flat_idx // num_classes
        labels = flat_idx % num_classes

        boxes = box_convert(pred_boxes, "cxcywh", "xyxy")
        boxes = torch.gather(boxes, 1, query_idx.unsqueeze(-1).expand(-1, -1, 4))
        height, width = sizes.unbind(1)
        boxes = boxes * torch.stack([width, height, width, height], dim=1)[:, None, :]
        return [{"scores": s, "labels": l, "boxes": b} for s, l, b in zip(scores, labels, boxes)]
