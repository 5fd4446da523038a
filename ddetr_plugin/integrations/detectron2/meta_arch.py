"""Deformable DETR as a detectron2 meta-architecture: detectron2 backbone and batched inputs,
our transformer, matcher, criterion and postprocessor.

``build_model(cfg)`` builds it when ``MODEL.META_ARCHITECTURE`` is "DeformableDETR". The
components are chosen by the ``NAME`` keys under ``MODEL.DEFORMABLE_DETR`` in our registries, so
a component registered there is selectable from a detectron2 config too; the backbone is any
detectron2 backbone of ``build_backbone(cfg)`` (``MODEL.BACKBONE.NAME``), of which
``MODEL.DEFORMABLE_DETR.IN_FEATURES`` feed the transformer. The state dict has the names of ours
except for the backbone's (``checkpoint/detectron2.py``).
"""
from typing import Any

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList, Instances

from ddetr_plugin.data.label_space import CONTIGUOUS
from ddetr_plugin.modeling.meta_arch import deformable_detr

from .config import to_ddetr_cfg


@META_ARCH_REGISTRY.register()
class DeformableDETR(deformable_detr.DeformableDETR):
    """Our ``DeformableDETR`` on detectron2's inputs and outputs.

    Input: detectron2's batched inputs, dicts with "image" (3, H, W) in ``cfg.INPUT.FORMAT``
    (normalised with ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` in that order, as detectron2's models do),
    optional "height"/"width" (the size to rescale detections to) and, in training, "instances"
    with ``gt_boxes`` (absolute XYXY in the image) and ``gt_classes`` (0..C-1).

    Output: in training the dict of weighted losses; in inference ``[{"instances": Instances}]`` with
    ``pred_boxes``, ``scores`` and ``pred_classes`` at the original size: our model's detections, scaled
    from the normalised boxes to "height" x "width" directly. Unlike ``detector_postprocess`` the boxes are
    neither clipped to the image nor dropped when clipping would empty them, as in our model and the
    official postprocessing, so that ``COCOEvaluator`` scores what our evaluator scores (clipping raises
    the quick-start's AP by about 1); clip them with ``instances.pred_boxes.clip(instances.image_size)``.
    """

    @configurable
    def __init__(self, **kwargs):
        """Keyword arguments of our ``DeformableDETR``; ``backbone`` is a detectron2 ``Backbone``."""
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg) -> dict:
        ddetr_cfg = to_ddetr_cfg(cfg)
        if ddetr_cfg.MODEL.LABEL_SPACE != CONTIGUOUS:
            raise ValueError(
                f"MODEL.DEFORMABLE_DETR.LABEL_SPACE is {ddetr_cfg.MODEL.LABEL_SPACE!r}; detectron2 numbers a "
                f"dataset's classes 0..C-1 ({CONTIGUOUS!r}). Convert category_id checkpoints with "
                f"tools/convert_checkpoint.py --to detectron2, which cuts the class head to those classes")
        arguments = super().from_config(ddetr_cfg, backbone=build_backbone(cfg))
        arguments["in_features"] = list(cfg.MODEL.DEFORMABLE_DETR.IN_FEATURES)
        return arguments

    def forward(self, batched_inputs: list[dict[str, Any]]):
        outputs = super().forward(batched_inputs)
        if self.training:
            return outputs
        results = []
        for detections, x in zip(outputs, batched_inputs):
            instances = Instances((x.get("height", x["image"].shape[1]), x.get("width", x["image"].shape[2])))
            instances.pred_boxes = Boxes(detections["boxes"])
            instances.scores = detections["scores"]
            instances.pred_classes = detections["labels"]
            results.append({"instances": instances})
        return results

    def preprocess_images(
        self, batched_inputs: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Normalised images padded by ``ImageList`` (to the backbone's size divisibility).

        Returns:
            images (B, 3, H, W) float32, padding zeros after normalisation; padding_mask (B, H, W)
            bool, True outside ``image_sizes``; the (height, width) of each unpadded image.
        """
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        image_list = ImageList.from_tensors(images, self.backbone.size_divisibility,
                                            padding_constraints=self.backbone.padding_constraints)
        batch, _, height, width = image_list.tensor.shape
        padding_mask = torch.ones((batch, height, width), dtype=torch.bool, device=self.device)
        for index, (h, w) in enumerate(image_list.image_sizes):
            padding_mask[index, :h, :w] = False
        return image_list.tensor, padding_mask, [tuple(size) for size in image_list.image_sizes]

    def prepare_targets(
        self, batched_inputs: list[dict[str, Any]], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Targets from each input's "instances", as our model's ``prepare_targets`` makes them."""
        targets = []
        for index, x in enumerate(batched_inputs):
            if "instances" not in x:
                raise KeyError(f"DeformableDETR: training needs batched_inputs[{index}]['instances']")
            instances = x["instances"]
            targets.append({"targets": {"boxes": instances.gt_boxes.tensor, "labels": instances.gt_classes}})
        return super().prepare_targets(targets, image_sizes)
