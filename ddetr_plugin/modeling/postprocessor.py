"""Turn raw Deformable DETR outputs into per-image detections.

Scores are per (query, class) sigmoids, so one query may yield several detections
with different labels; the top ``num_detections`` pairs over queries x classes are
kept, as in the official implementation.

Optionally (``nms_threshold > 0``; off by default and in the official model) a
class-wise NMS then drops detections that overlap a higher-scoring one of the same
label. A fully trained Deformable DETR needs none; a briefly trained one still puts
several queries on one object (the one-to-one matching has not yet taught the
decoder to suppress them), and NMS removes those duplicates.
"""
from typing import Dict, List, Sequence, Union

import torch
from torch import nn
from torchvision.ops import batched_nms, box_convert

from ..registry import POSTPROCESSOR_REGISTRY


@POSTPROCESSOR_REGISTRY.register()
class DetectionPostProcessor(nn.Module):
    """Top-k (query, class) detections with boxes in absolute xyxy pixels.

    Boxes are not clipped to the image, exactly like the official postprocessing,
    so that outputs stay comparable to it; clip them downstream if needed.

    Args:
        num_detections: detections kept per image (fewer when Q * C is smaller).
        nms_threshold: IoU above which a detection is dropped for a higher-scoring one of the
            same label (class-wise NMS over the kept detections); 0 disables it (the official).
    """

    def __init__(self, num_detections: int = 100, nms_threshold: float = 0.0) -> None:
        super().__init__()
        if num_detections < 1:
            raise ValueError(f"DetectionPostProcessor: num_detections must be >= 1, got {num_detections}")
        if not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f"DetectionPostProcessor: nms_threshold (TEST.NMS_THRESH) must be in [0, 1] "
                             f"(0: no NMS), got {nms_threshold}")
        self.num_detections = num_detections
        self.nms_threshold = nms_threshold

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {"num_detections": cfg.TEST.DETECTIONS_PER_IMAGE, "nms_threshold": cfg.TEST.NMS_THRESH}

    def extra_repr(self) -> str:
        return f"num_detections={self.num_detections}, nms_threshold={self.nms_threshold}"

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
            xyxy in pixels of ``target_sizes``, K = min(num_detections, Q * C) (fewer after NMS).
        """
        logits, pred_boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch = logits.shape[0]
        sizes = torch.as_tensor(target_sizes, device=pred_boxes.device)
        if sizes.shape != (batch, 2):
            raise ValueError(
                f"DetectionPostProcessor: target_sizes must have shape ({batch}, 2) rows (height, width), "
                f"got {tuple(sizes.shape)}"
            )
        scores, labels, boxes = self.top_k(logits, pred_boxes, sizes)
        results = [{"scores": s, "labels": l, "boxes": b} for s, l, b in zip(scores, labels, boxes)]
        if self.nms_threshold > 0:
            results = [self._nms(r) for r in results]
        return results

    def top_k(
        self, logits: torch.Tensor, pred_boxes: torch.Tensor, sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batched top-k without NMS (what an exported graph runs).

        Args:
            logits: (B, Q, C); pred_boxes: (B, Q, 4) normalized cxcywh; sizes: (B, 2) (height, width).

        Returns:
            scores (B, K) decreasing, labels (B, K) int64, boxes (B, K, 4) xyxy pixels of ``sizes``.
        """
        batch, num_queries, num_classes = logits.shape
        num_keep = min(self.num_detections, num_queries * num_classes)
        scores, flat_idx = logits.sigmoid().reshape(batch, -1).topk(num_keep, dim=1)
        query_idx = flat_idx // num_classes
        labels = flat_idx % num_classes

        boxes = box_convert(pred_boxes, "cxcywh", "xyxy")
        boxes = torch.gather(boxes, 1, query_idx.unsqueeze(-1).expand(-1, -1, 4))
        height, width = sizes.unbind(1)
        boxes = boxes * torch.stack([width, height, width, height], dim=1)[:, None, :]
        return scores, labels, boxes

    def _nms(self, result: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``result`` without the detections NMS drops; order (decreasing score) kept."""
        keep = batched_nms(result["boxes"].float(), result["scores"].float(), result["labels"], self.nms_threshold)
        return {key: value[keep] for key, value in result.items()}
