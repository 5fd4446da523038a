"""Deformable DETR (Zhu et al.): the detector built from its components.

Data flow of ``forward_raw``: backbone -> input projections, level masks and
position encodings -> transformer (``DetectionTransformer``: flatten -> encoder ->
query selection, learned or two-stage -> decoder) -> per-layer class and box heads.
``forward`` adds the image batching and either the losses (training) or the
postprocessing (eval). The CPU fast paths are turned on at construction (``cpu_fast_paths``).

State-dict names follow the official checkpoints (``backbone.body.*``,
``input_proj.{l}.{0,1}``, ``transformer.*``, ``query_embed``,
``class_embed.{i}``, ``bbox_embed.{i}.layers.{j}``). Without box refinement the
head entries are one shared module saved under every index, as the official.
The official's aliases ``transformer.decoder.{bbox,class}_embed.*`` do not
exist here: the transformer receives the heads as arguments instead of holding
references to them.
"""
import copy
import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from ddetr_plugin.registry import META_ARCH_REGISTRY, build_from_key

from ..cpu_fast_paths import cpu_fast_paths_allowed, enable_cpu_fast_paths
from ..transformer import MLP, DetectionTransformer, TransformerOutput, apply_box_delta
from .intermediates import collect_intermediates

CLASS_PRIOR_PROB = 0.01  # initial foreground probability of every class logit


def build_input_proj(in_channels: Sequence[int], d_model: int, num_levels: int, bias: bool = True) -> nn.ModuleList:
    """Projections of the backbone outputs to ``d_model``, plus extra coarser levels.

    Each backbone output gets a 1x1 conv + GroupNorm(32); each level beyond them a 3x3
    stride-2 conv + GroupNorm(32), the first reading the last backbone output, the next
    ones the previous extra level. Conv weights are xavier-uniform, biases zero.
    ``bias=False`` leaves the convs without bias (MMDetection's ChannelMapper before a norm).
    """
    projections = [nn.Sequential(nn.Conv2d(c, d_model, kernel_size=1, bias=bias), nn.GroupNorm(32, d_model))
                   for c in in_channels]
    channels = in_channels[-1]
    for _ in range(num_levels - len(in_channels)):
        projections.append(
            nn.Sequential(
                nn.Conv2d(channels, d_model, kernel_size=3, stride=2, padding=1, bias=bias), nn.GroupNorm(32, d_model)
            )
        )
        channels = d_model
    for projection in projections:
        nn.init.xavier_uniform_(projection[0].weight, gain=1)
        if bias:
            nn.init.zeros_(projection[0].bias)
    return nn.ModuleList(projections)


@META_ARCH_REGISTRY.register()
class DeformableDETR(nn.Module):
    """Deformable DETR, with optional iterative box refinement and two-stage queries.

    Args:
        backbone: images (B, 3, H, W) -> dict of features, with ``output_shape()``
            (name -> ShapeSpec(channels, stride)), finest first.
        position_encoding: padding mask (B, H, W) -> (B, d_model, H, W).
        transformer: a ``DetectionTransformer`` (``DeformableTransformer``); its
            ``num_feature_levels`` and ``two_stage`` define the variant.
        num_classes: C, classes of the sigmoid classifier (no background).
        num_queries: Q (for two-stage, the proposals kept).
        with_box_refine: each decoder layer refines the previous layer's boxes.
        aux_loss: return the earlier decoder layers' predictions in "aux_outputs".
        criterion: outputs, targets -> dict of weighted losses (needed for training).
        postprocessor: outputs, target sizes -> per-image detections (needed for eval).
        pixel_mean, pixel_std: RGB 0-255 normalisation of the input images.
        in_features: the backbone outputs that feed the transformer, finest first; default
            the last ``min(num_feature_levels, #outputs)`` of ``backbone.output_shape()``.
        input_proj_bias: whether the input projections' convs have a bias.
        cpu_fast_paths: turn on the CPU fast paths (``modeling/cpu_fast_paths.py``) unless the
            environment variable ``DDETR_CPU_FAST_PATHS=0`` forbids them.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        position_encoding: nn.Module,
        transformer: DetectionTransformer,
        num_classes: int,
        num_queries: int,
        with_box_refine: bool = False,
        aux_loss: bool = True,
        criterion: Optional[nn.Module] = None,
        postprocessor: Optional[nn.Module] = None,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
        in_features: Optional[Sequence[str]] = None,
        input_proj_bias: bool = True,
        cpu_fast_paths: bool = True,
    ):
        super().__init__()
        d_model = transformer.d_model
        num_levels = transformer.num_feature_levels
        self.two_stage = transformer.two_stage
        self.num_queries = num_queries
        self.num_feature_levels = num_levels
        self.with_box_refine = with_box_refine
        self.aux_loss = aux_loss
        self.backbone = backbone
        self.position_encoding = position_encoding
        self.transformer = transformer
        self.criterion = criterion
        self.postprocessor = postprocessor

        output_shape = backbone.output_shape()
        if in_features is None:
            # the last min(L, #outputs) backbone features (single scale: the last)
            in_features = list(output_shape)[-num_levels:]
        unknown = [name for name in in_features if name not in output_shape]
        if not in_features or unknown or len(in_features) > num_levels:
            raise ValueError(
                f"DeformableDETR: in_features must be 1 to {num_levels} (the feature levels) of the backbone's "
                f"outputs {list(output_shape)}, got {list(in_features)}"
            )
        self.in_features = list(in_features)
        self.input_proj = build_input_proj([output_shape[name].channels for name in self.in_features], d_model,
                                           num_levels, bias=input_proj_bias)
        if not self.two_stage:
            self.query_embed = nn.Embedding(num_queries, d_model * 2)
        self._build_heads(d_model, num_classes, transformer.num_decoder_layers)

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), False)
        self.cpu_fast_paths = cpu_fast_paths_allowed(cpu_fast_paths)
        if self.cpu_fast_paths:
            enable_cpu_fast_paths(self)

    def _build_heads(self, d_model: int, num_classes: int, num_decoder_layers: int) -> None:
        """One class and one box head per decoder layer (plus one for the encoder proposals
        with two-stage), initialised as the official."""
        class_embed = nn.Linear(d_model, num_classes)
        bbox_embed = MLP(d_model, d_model, 4, 3)
        nn.init.constant_(class_embed.bias, -math.log((1 - CLASS_PRIOR_PROB) / CLASS_PRIOR_PROB))
        nn.init.zeros_(bbox_embed.layers[-1].weight)
        nn.init.zeros_(bbox_embed.layers[-1].bias)
        num_heads = num_decoder_layers + 1 if self.two_stage else num_decoder_layers
        if self.with_box_refine:
            # independent copies of the same initial weights
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_heads))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_heads))
        else:
            self.class_embed = nn.ModuleList([class_embed] * num_heads)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_heads)
        # initial boxes are small (sigmoid(-2) = 0.12 of the image); the official sets this on the
        # first head only, so with refinement the later heads start at size 0.5 relative to the reference
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        if self.two_stage:
            # sizes come from the proposals
            for head in self.bbox_embed:
                nn.init.zeros_(head.layers[-1].bias[2:])

    @classmethod
    def from_config(cls, cfg, backbone: Optional[nn.Module] = None) -> dict:
        """Constructor arguments from ``cfg``; ``backbone``, when given, replaces MODEL.BACKBONE's."""
        matcher = build_from_key("MODEL.MATCHER.NAME", cfg)
        return dict(
            backbone=backbone if backbone is not None else build_from_key("MODEL.BACKBONE.NAME", cfg),
            position_encoding=build_from_key("MODEL.POSITION_ENCODING.NAME", cfg),
            transformer=build_from_key("MODEL.TRANSFORMER.NAME", cfg),
            num_classes=cfg.MODEL.NUM_CLASSES,
            num_queries=cfg.MODEL.NUM_QUERIES,
            with_box_refine=cfg.MODEL.WITH_BOX_REFINE,
            aux_loss=cfg.MODEL.AUX_LOSS,
            criterion=build_from_key("MODEL.CRITERION.NAME", cfg, matcher=matcher),
            postprocessor=build_from_key("MODEL.POSTPROCESSOR.NAME", cfg),
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD),
            cpu_fast_paths=cfg.MODEL.CPU_FAST_PATHS,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ batched inputs
    def forward(self, batched_inputs: list[dict[str, Any]]):
        """Losses in training, detections in eval.

        Args:
            batched_inputs: dicts with "image" (3, H, W) RGB 0-255, optional "height"/"width"
                (size to rescale detections to; default the image's) and, in training,
                "targets": {"boxes": (K, 4) absolute xyxy in the image, "labels": (K,) int64}.

        Returns:
            training: dict of weighted scalar losses.
            eval: one dict per image, {"boxes": (K, 4) xyxy in original pixels, "scores": (K,), "labels": (K,)}.
        """
        images, padding_mask, image_sizes = self.preprocess_images(batched_inputs)
        outputs = self.forward_raw(images, padding_mask)
        if self.training:
            if self.criterion is None:
                raise RuntimeError("DeformableDETR: training needs a criterion (MODEL.CRITERION.NAME)")
            return self.criterion(outputs, self.prepare_targets(batched_inputs, image_sizes))
        if self.postprocessor is None:
            raise RuntimeError("DeformableDETR: inference needs a postprocessor (MODEL.POSTPROCESSOR.NAME)")
        # boxes are normalized to each unpadded image, so they scale to its original size directly
        target_sizes = torch.tensor(
            [[x.get("height", h), x.get("width", w)] for x, (h, w) in zip(batched_inputs, image_sizes)],
            dtype=torch.float32,
        ).to(self.device, non_blocking=True)
        return self.postprocessor(outputs, target_sizes)

    def preprocess_images(
        self, batched_inputs: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Normalize and pad the images to the batch's largest height and width (bottom/right).

        Returns:
            images (B, 3, H, W) float32, padding zeros after normalisation; padding_mask
            (B, H, W) bool, True on padding; the (height, width) of each unpadded image.
        """
        images = []
        for index, x in enumerate(batched_inputs):
            image = x["image"]
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"DeformableDETR: batched_inputs[{index}]['image'] must be (3, H, W) RGB, got {tuple(image.shape)}"
                )
            images.append(image.to(self.device, non_blocking=True))
        image_sizes = [(image.shape[1], image.shape[2]) for image in images]
        height = max(h for h, _ in image_sizes)
        width = max(w for _, w in image_sizes)
        batch = images[0].new_zeros((len(images), 3, height, width), dtype=torch.float32)
        padding_mask = torch.ones((len(images), height, width), dtype=torch.bool, device=self.device)
        for index, (image, (h, w)) in enumerate(zip(images, image_sizes)):
            batch[index, :, :h, :w] = (image.float() - self.pixel_mean) / self.pixel_std
            padding_mask[index, :h, :w] = False
        return batch, padding_mask, image_sizes

    def prepare_targets(
        self, batched_inputs: list[dict[str, Any]], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Targets with boxes as cxcywh normalized by the unpadded image size."""
        targets = []
        for index, (x, (height, width)) in enumerate(zip(batched_inputs, image_sizes)):
            if "targets" not in x:
                raise KeyError(f"DeformableDETR: training needs batched_inputs[{index}]['targets']")
            boxes = x["targets"]["boxes"].float()
            # converted where the boxes are (usually the data loader's CPU tensors), then moved
            scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
            boxes = box_convert(boxes, "xyxy", "cxcywh") / scale
            targets.append(
                {
                    "boxes": boxes.to(self.device, non_blocking=True),
                    "labels": x["targets"]["labels"].to(self.device, non_blocking=True),
                }
            )
        return targets

    # ------------------------------------------------------------------ network
    def forward_raw(
        self, images: torch.Tensor, padding_mask: torch.Tensor, return_intermediates: bool = False
    ) -> dict[str, Any]:
        """The network on a normalized, padded batch.

        Args:
            images: (B, 3, H, W) normalized.
            padding_mask: (B, H, W) bool, True on padding.
            return_intermediates: add "intermediates" (see ``collect_intermediates``): per decoder
                layer the hidden states and reference points, per encoder and decoder layer the
                sampling locations and attention weights of the deformable attention.

        Returns:
            "pred_logits" (B, Q, C), "pred_boxes" (B, Q, 4) normalized cxcywh (relative to each
            unpadded image), "aux_outputs" (such dicts for decoder layers 0..D-2; empty without
            aux_loss), "enc_outputs" ({"pred_logits" (B, S, C), "pred_boxes" (B, S, 4)} of the
            encoder proposals with two-stage, else None), and "intermediates" when asked.
        """
        # None: the attention layers keep no reference to their sampling (the default costs nothing)
        encoder_sampling = [] if return_intermediates else None
        decoder_sampling = [] if return_intermediates else None
        features = self.backbone(images)
        srcs, masks, pos_embeds = self.prepare_levels(features, padding_mask)
        transformed = self.transformer(
            srcs, masks, pos_embeds, self.num_queries,
            query_embed=None if self.two_stage else self.query_embed.weight,
            bbox_embed=self.bbox_embed if self.with_box_refine else None,
            proposal_class_head=self.class_embed[-1] if self.two_stage else None,
            proposal_box_head=self.bbox_embed[-1] if self.two_stage else None,
            encoder_record=encoder_sampling,
            decoder_record=decoder_sampling,
        )
        outputs = self.predict(transformed)
        if return_intermediates:
            outputs["intermediates"] = collect_intermediates(transformed, encoder_sampling, decoder_sampling)
        return outputs

    def prepare_levels(
        self, features: dict[str, torch.Tensor], padding_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Projected features, padding masks and position encodings of every level.

        Args:
            features: backbone outputs by name.
            padding_mask: (B, H, W) bool image padding mask.

        Returns:
            L tensors each of srcs (B, C, H_l, W_l), masks (B, H_l, W_l) bool and
            position encodings (B, C, H_l, W_l).
        """
        srcs = [projection(features[name]) for projection, name in zip(self.input_proj, self.in_features)]
        last_backbone_output = features[self.in_features[-1]]
        for projection in self.input_proj[len(self.in_features):]:
            srcs.append(projection(last_backbone_output if len(srcs) == len(self.in_features) else srcs[-1]))
        # nearest-neighbour downsampling of the image mask to every level, as the official
        masks = [F.interpolate(padding_mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0] for src in srcs]
        pos_embeds = [self.position_encoding(mask).to(src.dtype) for src, mask in zip(srcs, masks)]
        return srcs, masks, pos_embeds

    def predict(self, transformed: TransformerOutput) -> dict[str, Any]:
        """Class logits and boxes of every decoder layer (and of the two-stage proposals)."""
        per_layer = []
        for index, (hidden, reference) in enumerate(zip(transformed.hidden_states, transformed.reference_points)):
            logits = self.class_embed[index](hidden)
            boxes = apply_box_delta(self.bbox_embed[index](hidden), reference)
            per_layer.append({"pred_logits": logits, "pred_boxes": boxes})
        outputs = dict(per_layer[-1])
        outputs["aux_outputs"] = per_layer[:-1] if self.aux_loss else []
        outputs["enc_outputs"] = None
        if self.two_stage:
            outputs["enc_outputs"] = {
                "pred_logits": transformed.enc_outputs_class,
                "pred_boxes": transformed.enc_outputs_coord_unact.sigmoid(),
            }
        return outputs
