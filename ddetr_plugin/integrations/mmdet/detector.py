"""``PluginDeformableDETR``: our Deformable DETR as an mmdet detector (``BaseDetector``).

Switching an mmdet Deformable DETR config to it is a change of ``type``: the same config dict
builds the same network from our components (our op underneath: any batch size, bf16 on GPU),
with the backbone from mmdet's registry. Or ``ddetr_config='our.yaml'`` (+ ``ddetr_options``,
KEY VALUE overrides) builds the model of one of our configs.

Data flow: mmdet's ``DetDataPreprocessor`` normalizes and pads the batch (bottom/right) and
records ``batch_input_shape`` and each ``img_shape`` -> padding mask -> our ``forward_raw`` ->
``loss`` (our criterion, mmdet's loss names) or ``predict`` (our postprocessor, boxes divided by
``scale_factor``) or ``_forward`` (raw tensors).

Boxes reaching past the image are clipped to ``img_shape`` as mmdet's DETR heads do when the model
is built from mmdet's fields, and left as they are (as the official implementation and our
evaluation) when it is built from ``ddetr_config``; ``clip_boxes`` chooses either way. On a briefly
trained model the choice moves COCO AP by a point or more, so each default gives its source's numbers.

The state dict is ours under ``detector.``; ``load_from`` also accepts mmdet's own
DeformableDETR checkpoints and ours (see ``load_hook``).
"""
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmengine.structures import InstanceData
from torchvision.ops import box_convert

from ddetr_plugin.config.mmdet_model import MMDetConfigError, data_preprocessor_values

from .build import build_from_ddetr_config, build_from_mmdet_fields
from .load_hook import convert_on_load

# our loss terms -> mmdet's names (mmengine sums every logged key containing "loss")
_LOSS_NAMES = {"loss_ce": "loss_cls", "loss_bbox": "loss_bbox", "loss_giou": "loss_iou"}
_LOSS_KEY = re.compile(r"(loss_ce|loss_bbox|loss_giou)(?:_(\d+|enc))?")


def mmdet_loss_name(key: str) -> str:
    """``loss_ce`` -> ``loss_cls``, ``loss_giou_0`` -> ``d0.loss_iou``, ``loss_bbox_enc`` -> ``enc_loss_bbox``."""
    match = _LOSS_KEY.fullmatch(key)
    if not match:
        return key
    term, suffix = _LOSS_NAMES[match.group(1)], match.group(2)
    if suffix is None:
        return term
    return f"enc_{term}" if suffix == "enc" else f"d{suffix}.{term}"


@MODELS.register_module()
class PluginDeformableDETR(BaseDetector):
    """Deformable DETR (plain, box refinement, two-stage) built from mmdet's config or our YAML.

    Args:
        ddetr_config: one of our YAML configs; then no mmdet model field may be given.
        ddetr_options: KEY VALUE overrides of ``ddetr_config``.
        backbone: mmdet backbone config (mmdet fields).
        data_preprocessor: mmdet's; with ``ddetr_config`` defaults to a ``DetDataPreprocessor``
            with its MODEL.PIXEL_MEAN/STD (RGB), and must agree with them when given.
        init_cfg: mmengine initialisation of the whole model (e.g. ``Pretrained``).
        clip_boxes: clip predicted boxes to the image; default True with mmdet's fields, False with
            ``ddetr_config``.
        **fields: the other fields of mmdet's ``DeformableDETR`` config (neck, encoder, decoder,
            positional_encoding, bbox_head, train_cfg, test_cfg, num_queries, num_feature_levels,
            with_box_refine, as_two_stage).

    Raises:
        MMDetConfigError: a field that cannot be honoured, named.
    """

    def __init__(self, ddetr_config: Optional[str] = None, ddetr_options: Sequence[Any] = (),
                 backbone: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, clip_boxes: Optional[bool] = None, **fields: Any):
        if ddetr_config:
            if backbone is not None or fields:
                given = ", ".join(sorted(fields) + (["backbone"] if backbone is not None else []))
                raise MMDetConfigError(f"PluginDeformableDETR: give either ddetr_config or mmdet's model fields, "
                                       f"not both ({given})")
            detector, cfg = build_from_ddetr_config(ddetr_config, ddetr_options)
            data_preprocessor = _preprocessor_for(cfg, data_preprocessor)
        else:
            if backbone is None:
                raise MMDetConfigError("PluginDeformableDETR needs ddetr_config='our.yaml' or mmdet's model fields "
                                       "(backbone, neck, encoder, decoder, bbox_head, ...)")
            detector, cfg = build_from_mmdet_fields(fields, backbone)
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.detector = detector
        self.ddetr_cfg = cfg
        self.clip_boxes = not ddetr_config if clip_boxes is None else clip_boxes
        self.register_load_state_dict_pre_hook(convert_on_load)

    def init_weights(self) -> None:
        """mmengine's initialisation, including the mmdet backbone's ``init_cfg`` (e.g. pretrained
        weights); our own modules keep the initialisation they were built with."""
        super().init_weights()
        body = getattr(self.detector.backbone, "body", None)
        if hasattr(body, "init_weights") and not getattr(body, "is_init", False):
            body.init_weights()

    # ------------------------------------------------------------------ mmdet's interface
    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """Weighted losses, named as mmdet's (``loss_cls``, ``d0.loss_bbox``, ``enc_loss_iou``, ...).

        Args:
            batch_inputs: (B, 3, H, W) normalized, padded. batch_data_samples: with ``gt_instances``
                (``bboxes`` (K, 4) xyxy in ``img_shape`` pixels, ``labels`` (K,)).
        """
        outputs = self.forward_raw(batch_inputs, batch_data_samples)
        targets = [self._targets(sample) for sample in batch_data_samples]
        losses = self.detector.criterion(outputs, targets)
        return {mmdet_loss_name(key): value for key, value in losses.items()}

    def predict(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList, rescale: bool = True) -> SampleList:
        """Samples with ``pred_instances``: ``bboxes`` (K, 4) xyxy (in ``ori_shape`` pixels when
        ``rescale``), ``scores`` (K,), ``labels`` (K,)."""
        outputs = self.forward_raw(batch_inputs, batch_data_samples)
        image_sizes = torch.tensor([sample.img_shape for sample in batch_data_samples], dtype=torch.float32)
        detections = self.detector.postprocessor(outputs, image_sizes.to(batch_inputs.device))
        results = []
        for sample, detection in zip(batch_data_samples, detections):
            height, width = sample.img_shape
            boxes = detection["boxes"].float()
            if self.clip_boxes:
                boxes = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                                     boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)
            if rescale:
                scale_w, scale_h = sample.metainfo.get("scale_factor", (1.0, 1.0))
                boxes = boxes / boxes.new_tensor([scale_w, scale_h, scale_w, scale_h])
            results.append(InstanceData(bboxes=boxes, scores=detection["scores"], labels=detection["labels"]))
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: torch.Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every decoder layer's class logits (D, B, Q, C) and boxes (D, B, Q, 4) normalized cxcywh
        (the last layer alone without auxiliary losses)."""
        outputs = self.forward_raw(batch_inputs, batch_data_samples)
        layers = list(outputs["aux_outputs"]) + [outputs]
        return (torch.stack([layer["pred_logits"] for layer in layers]),
                torch.stack([layer["pred_boxes"] for layer in layers]))

    def extract_feat(self, batch_inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The backbone's feature maps, finest first."""
        return tuple(self.detector.backbone(batch_inputs).values())

    # ------------------------------------------------------------------ ours
    def forward_raw(self, batch_inputs: torch.Tensor, batch_data_samples: OptSampleList) -> Dict[str, Any]:
        """Our raw outputs (``DeformableDETR.forward_raw``) with the padding mask of the samples."""
        return self.detector.forward_raw(batch_inputs, padding_mask(batch_inputs, batch_data_samples))

    @staticmethod
    def _targets(sample) -> Dict[str, torch.Tensor]:
        """``{"boxes": (K, 4) cxcywh normalized by img_shape, "labels": (K,)}``."""
        gt = sample.gt_instances
        boxes = gt.bboxes.tensor if hasattr(gt.bboxes, "tensor") else gt.bboxes
        height, width = sample.img_shape
        scale = boxes.new_tensor([width, height, width, height])
        return {"boxes": box_convert(boxes.float(), "xyxy", "cxcywh") / scale, "labels": gt.labels.long()}


def padding_mask(batch_inputs: torch.Tensor, batch_data_samples: OptSampleList) -> torch.Tensor:
    """(B, H, W) bool, True outside each sample's ``img_shape`` (the preprocessor pads bottom/right);
    all False without samples."""
    batch, _, height, width = batch_inputs.shape
    mask = torch.zeros((batch, height, width), dtype=torch.bool, device=batch_inputs.device)
    for index, sample in enumerate(batch_data_samples or []):
        image_height, image_width = sample.img_shape
        mask[index, image_height:, :] = True
        mask[index, :, image_width:] = True
    return mask


def _preprocessor_for(cfg, given: Optional[dict]) -> dict:
    """A DetDataPreprocessor config normalizing as ``cfg`` (RGB); ``given`` must agree with it."""
    mean, std = list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)
    if given is None:
        return dict(type="DetDataPreprocessor", mean=mean, std=std, bgr_to_rgb=True, pad_size_divisor=1)
    values = data_preprocessor_values(given)
    if not (torch.allclose(torch.tensor(values["MODEL.PIXEL_MEAN"]), torch.tensor(mean))
            and torch.allclose(torch.tensor(values["MODEL.PIXEL_STD"]), torch.tensor(std))):
        raise MMDetConfigError(f"model.data_preprocessor normalizes with mean {values['MODEL.PIXEL_MEAN']}, std "
                               f"{values['MODEL.PIXEL_STD']} but the ddetr_config model was trained with "
                               f"MODEL.PIXEL_MEAN {mean}, MODEL.PIXEL_STD {std}")
    return given
