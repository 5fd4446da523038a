"""Hungarian matching between predicted and ground-truth boxes (Deformable DETR).

The cost of assigning prediction q to target k is

    cost_class * focal_cost[q, label_k] + cost_bbox * L1(box_q, box_k) + cost_giou * (-GIoU(box_q, box_k))

where the focal cost is the difference between the focal loss of calling the
class present and of calling it absent. The cost is computed for the whole batch
at once and each image's block is solved with scipy's ``linear_sum_assignment``,
as the official implementation does, so that ties resolve the same way.
"""
from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

from ..registry import MATCHER_REGISTRY

# Added inside the logs of the class cost so that p = 0 or p = 1 stays finite.
_LOG_EPS = 1e-8


def focal_class_cost(prob: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Focal-style classification cost.

    Args:
        prob: (N, C) sigmoid scores.
        labels: (K,) int64 target classes.

    Returns:
        (N, K): focal loss of the positive minus focal loss of the negative for each target's class.
    """
    neg_cost = (1 - alpha) * (prob**gamma) * (-(1 - prob + _LOG_EPS).log())
    pos_cost = alpha * ((1 - prob) ** gamma) * (-(prob + _LOG_EPS).log())
    return pos_cost[:, labels] - neg_cost[:, labels]


@MATCHER_REGISTRY.register()
class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets minimising a weighted cost.

    Args:
        cost_class: weight of the focal classification cost.
        cost_bbox: weight of the L1 distance between normalized cxcywh boxes.
        cost_giou: weight of the negative generalized IoU.
        focal_alpha, focal_gamma: parameters of the focal classification cost.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError(
                "HungarianMatcher: cost_class, cost_bbox and cost_giou are all 0; the matching would be arbitrary"
            )
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            "cost_class": cfg.MODEL.MATCHER.COST_CLASS,
            "cost_bbox": cfg.MODEL.MATCHER.COST_BBOX,
            "cost_giou": cfg.MODEL.MATCHER.COST_GIOU,
            # one focal loss for the cost and the criterion's classification loss
            "focal_alpha": cfg.MODEL.CRITERION.FOCAL_ALPHA,
            "focal_gamma": cfg.MODEL.CRITERION.FOCAL_GAMMA,
        }

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}"
        )

    @torch.no_grad()
    def cost_matrix(self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]) -> torch.Tensor:
        """The weighted cost of every prediction against every target of the batch.

        Args:
            outputs: "pred_logits" (B, Q, C) and "pred_boxes" (B, Q, 4) normalized cxcywh.
            targets: B dicts with "labels" (K_i,) int64 and "boxes" (K_i, 4) normalized cxcywh.

        Returns:
            (B, Q, sum K_i) on the predictions' device; image i's block is the i-th split of the
            last dimension by the sizes K_i.
        """
        logits, pred_boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch, num_queries, num_classes = logits.shape
        if len(targets) != batch:
            raise ValueError(f"HungarianMatcher: got {len(targets)} target dicts for a batch of {batch} predictions")
        device = logits.device
        # at least float32, so that half-precision outputs (autocast) are matched as the official fp32 code
        dtype = torch.promote_types(torch.promote_types(logits.dtype, pred_boxes.dtype), torch.float32)
        prob = logits.flatten(0, 1).to(dtype).sigmoid()
        boxes = pred_boxes.flatten(0, 1).to(dtype)
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.int64)
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(device=device, dtype=dtype)
        _check_labels(tgt_labels, num_classes)

        cost_class = focal_class_cost(prob, tgt_labels, self.focal_alpha, self.focal_gamma)
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy"))
        # summed in the official order so that the floats (and hence scipy's tie-breaking) match it
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        return cost.view(batch, num_queries, -1)

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's predictions to its targets.

        Args:
            outputs: "pred_logits" (B, Q, C) and "pred_boxes" (B, Q, 4) normalized cxcywh; other keys ignored.
            targets: B dicts with "labels" (K_i,) int64 and "boxes" (K_i, 4) normalized cxcywh.

        Returns:
            B pairs (pred_indices, target_indices) of int64 CPU tensors of length min(Q, K_i),
            pred_indices in increasing order; empty for images without targets.
        """
        cost = self.cost_matrix(outputs, targets).cpu()
        if not torch.isfinite(cost).all():
            raise ValueError(f"HungarianMatcher: the matching cost is not finite: {_diagnose(outputs, targets)}")
        sizes = [len(t["boxes"]) for t in targets]
        indices = []
        for i, block in enumerate(cost.split(sizes, dim=-1)):
            pred_idx, tgt_idx = linear_sum_assignment(block[i].numpy())
            indices.append(
                (torch.as_tensor(pred_idx, dtype=torch.int64), torch.as_tensor(tgt_idx, dtype=torch.int64))
            )
        return indices


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"HungarianMatcher: target labels must lie in [0, {num_classes - 1}] (pred_logits has {num_classes} "
            f"classes), got labels from {low} to {high}"
        )


def _diagnose(outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]) -> str:
    """Which input makes the cost non-finite: NaN/inf values, or zero-area boxes (GIoU is 0/0)."""
    problems = []
    for key in ("pred_logits", "pred_boxes"):
        if not torch.isfinite(outputs[key]).all():
            problems.append(f"outputs[{key!r}] contains NaN or inf")
    if (outputs["pred_boxes"][..., 2:] <= 0).any():
        problems.append("outputs['pred_boxes'] has boxes of zero or negative width/height")
    for i, target in enumerate(targets):
        boxes = target["boxes"]
        if not torch.isfinite(boxes).all():
            problems.append(f"targets[{i}]['boxes'] contains NaN or inf")
        elif (boxes[:, 2:] <= 0).any():
            problems.append(f"targets[{i}]['boxes'] has boxes of zero or negative width/height (expected cxcywh)")
    return "; ".join(problems) or "inputs are finite and boxes have positive size; check the cost weights"
