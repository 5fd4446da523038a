"""Set-prediction loss of Deformable DETR: Hungarian matching, then focal, L1 and GIoU terms.

Every term is normalised by the number of target boxes in the batch (averaged over
processes), as the official implementation does. The same terms are computed for
the final decoder layer, for each earlier decoder layer ("aux_outputs", keys
suffixed ``_0``, ``_1``, ...) and, in two-stage models, for the encoder proposals
("enc_outputs", suffix ``_enc``) with every target relabelled as class 0.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from ..registry import CRITERION_REGISTRY, build_from_key

LOSS_TERMS = ("loss_ce", "loss_bbox", "loss_giou")

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


@CRITERION_REGISTRY.register()
class SetCriterion(nn.Module):
    """Weighted Deformable DETR losses.

    Args:
        num_classes: number of classes C of the decoder's classifier (no background column).
        matcher: module returning per-image (pred_indices, target_indices), e.g. ``HungarianMatcher``.
        loss_class_weight, loss_bbox_weight, loss_giou_weight: weights of loss_ce, loss_bbox, loss_giou.
        focal_alpha, focal_gamma: parameters of the sigmoid focal loss.
        enc_loss: add the class-agnostic ``_enc`` terms when the outputs carry "enc_outputs".
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        loss_class_weight: float = 2.0,
        loss_bbox_weight: float = 5.0,
        loss_giou_weight: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        enc_loss: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": loss_class_weight, "loss_bbox": loss_bbox_weight, "loss_giou": loss_giou_weight}
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.enc_loss = enc_loss

    @classmethod
    def from_config(cls, cfg, matcher: Optional[nn.Module] = None) -> dict:
        if matcher is None:
            matcher = build_from_key("MODEL.MATCHER.NAME", cfg)
        return {
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "matcher": matcher,
            "loss_class_weight": cfg.MODEL.CRITERION.LOSS_CLASS_WEIGHT,
            "loss_bbox_weight": cfg.MODEL.CRITERION.LOSS_BBOX_WEIGHT,
            "loss_giou_weight": cfg.MODEL.CRITERION.LOSS_GIOU_WEIGHT,
            "focal_alpha": cfg.MODEL.CRITERION.FOCAL_ALPHA,
            "focal_gamma": cfg.MODEL.CRITERION.FOCAL_GAMMA,
            "enc_loss": cfg.MODEL.CRITERION.ENC_LOSS,
        }

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, weights={self.weights}, focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}, enc_loss={self.enc_loss}"
        )

    def forward(self, outputs: dict, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Weighted scalar losses; see ``unweighted`` for the arguments and keys."""
        return self.apply_weights(self.unweighted(outputs, targets))

    def apply_weights(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Multiply each term (``loss_ce``, ``loss_ce_0``, ``loss_ce_enc``, ...) by its weight."""
        return {key: self.weights[_term_of(key)] * value for key, value in losses.items()}

    def unweighted(self, outputs: dict, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Raw (unweighted) scalar losses, as HF transformers reports them.

        Args:
            outputs: "pred_logits" (B, Q, C), "pred_boxes" (B, Q, 4) normalized cxcywh; optional
                "aux_outputs" (list of such dicts for decoder layers 0..n-2) and "enc_outputs"
                (such a dict with logits (B, S, 1 or C), or None).
            targets: B dicts with "labels" (K_i,) int64 and "boxes" (K_i, 4) normalized cxcywh.

        Returns:
            "loss_ce", "loss_bbox", "loss_giou", the same suffixed ``_{i}`` per aux layer, and
            suffixed ``_enc`` when "enc_outputs" is given and ``enc_loss`` is on.
        """
        for name, layer_outputs in [("outputs", outputs)] + [
            (f"aux_outputs[{i}]", aux) for i, aux in enumerate(outputs.get("aux_outputs") or [])
        ]:
            num_classes = layer_outputs["pred_logits"].shape[-1]
            if num_classes != self.num_classes:
                raise ValueError(
                    f"SetCriterion: {name}['pred_logits'] has {num_classes} classes, expected "
                    f"num_classes={self.num_classes} (MODEL.NUM_CLASSES)"
                )
        num_boxes = self._num_boxes(targets, outputs["pred_logits"].device)

        losses = self._layer_losses(outputs, targets, num_boxes, suffix="")
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            losses.update(self._layer_losses(aux, targets, num_boxes, suffix=f"_{i}"))
        enc_outputs = outputs.get("enc_outputs")
        if enc_outputs is not None and self.enc_loss:
            # the encoder proposes class-agnostic boxes: every target counts as class 0
            agnostic = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
            losses.update(self._layer_losses(enc_outputs, agnostic, num_boxes, suffix="_enc"))
        return losses

    def _layer_losses(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]], num_boxes: float, suffix: str
    ) -> Dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        loss_bbox, loss_giou = self.box_losses(outputs["pred_boxes"], targets, indices, num_boxes)
        return {
            "loss_ce" + suffix: self.class_loss(outputs["pred_logits"], targets, indices, num_boxes),
            "loss_bbox" + suffix: loss_bbox,
            "loss_giou" + suffix: loss_giou,
        }

    def class_loss(
        self, logits: torch.Tensor, targets: List[Dict[str, torch.Tensor]], indices: Indices, num_boxes: float
    ) -> torch.Tensor:
        """Sigmoid focal loss summed over queries and classes, divided by ``num_boxes``.

        Args:
            logits: (B, Q, C); unmatched queries and the other classes of matched ones are negatives.
        """
        batch_idx, query_idx = _matched_positions(indices, logits.device)
        labels = torch.cat([t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, indices)])
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, query_idx, labels.to(logits.device)] = 1
        loss = sigmoid_focal_loss(logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        # mean over queries times the number of queries equals the plain sum; written the official
        # way so the floats match it exactly
        return loss.mean(1).sum() / num_boxes * logits.shape[1]

    def box_losses(
        self, pred_boxes: torch.Tensor, targets: List[Dict[str, torch.Tensor]], indices: Indices, num_boxes: float
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """L1 and (1 - GIoU) over matched pairs, each summed and divided by ``num_boxes``.

        Args:
            pred_boxes: (B, Q, 4) normalized cxcywh.

        Returns:
            (loss_bbox, loss_giou); both 0 with a graph reaching ``pred_boxes`` when nothing is matched.
        """
        batch_idx, query_idx = _matched_positions(indices, pred_boxes.device)
        src = pred_boxes[batch_idx, query_idx]
        tgt = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)]).to(src)
        loss_bbox = (src - tgt).abs().sum() / num_boxes
        # the diagonal of the pairwise matrix (no epsilon), as the official; torchvision's
        # generalized_box_iou_loss adds eps=1e-7, which is visible on small normalized boxes
        giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")))
        loss_giou = (1 - giou).sum() / num_boxes
        return loss_bbox, loss_giou

    @staticmethod
    def _num_boxes(targets: Sequence[Dict[str, torch.Tensor]], device: torch.device) -> float:
        """Target boxes per process (total over all processes / world size), at least 1."""
        count = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return torch.clamp(count, min=1).item()


def _matched_positions(indices: Indices, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch index, query index) of every matched prediction, image by image."""
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    return batch_idx.to(device), query_idx.to(device)


def _term_of(key: str) -> str:
    for term in LOSS_TERMS:
        if key == term or key.startswith(term + "_"):
            return term
    raise KeyError(f"SetCriterion: no weight for loss {key!r}; expected one of {LOSS_TERMS}, optionally suffixed")
