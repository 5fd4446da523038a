"""Augmentation on ``torchvision.transforms.v2`` with ``tv_tensors`` boxes.

A sample is a dict ``{"image": tv_tensors.Image (3, H, W) uint8, "boxes": tv_tensors.BoundingBoxes
(K, 4) XYXY absolute, "labels": (K,) int64}``; transforms keep the three aligned.

Training (the official recipe): horizontal flip with p 0.5, then with p 0.5 each
either the multi-scale resize (shortest side one of INPUT.MIN_SIZE_TRAIN, longest
at most INPUT.MAX_SIZE_TRAIN) or: shortest side one of INPUT.CROP.RESIZE, a random
crop whose width and height are drawn independently in
[INPUT.CROP.SIZE[0], min(side, INPUT.CROP.SIZE[1])], then the multi-scale resize.
Boxes are clipped by the crop and those left under 1 px wide or high are removed
with their labels (torchvision's SanitizeBoundingBoxes; the official code removes
only empty ones). Test: shortest side INPUT.MIN_SIZE_TEST, longest at most
INPUT.MAX_SIZE_TEST.

Resize sizes follow the official rule (``get_size_with_aspect_ratio``): the short
side becomes ``size`` exactly, the long side ``int(size * long / short)``
(truncated); if that would exceed ``max_size``, ``size`` becomes
``round(max_size * short / long)`` first. An image already at the computed size is
returned untouched (not resampled). Resampling is bilinear with antialiasing.

Randomness comes from torch's global generator (as all v2 transforms); the mapper
seeds it per sample inside ``torch.random.fork_rng``.
"""
from typing import Any, Sequence

import torch
from fvcore.common.config import CfgNode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def shortest_edge_size(height: int, width: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(new_height, new_width) with the short side ``size`` and the long side at most ``max_size``."""
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


class ResizeShortestEdge(v2.Transform):
    """Resize so the short side is one of ``sizes`` (drawn uniformly) and the long side at most ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        super().__init__()
        if not sizes or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"sizes must be a non-empty list of positive ints, got {sizes!r}")
        if max_size is not None and max_size <= 0:
            raise ValueError(f"max_size must be positive or None, got {max_size!r}")
        self.sizes = [int(s) for s in sizes]
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        size = self.sizes[int(torch.randint(len(self.sizes), ()))] if len(self.sizes) > 1 else self.sizes[0]
        return {"size": shortest_edge_size(height, width, size, self.max_size)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        new_size = list(params["size"])
        if isinstance(inpt, torch.Tensor) and list(F.get_size(inpt)) == new_size:
            return inpt
        return self._call_kernel(F.resize, inpt, size=new_size, antialias=True)


class RandomSizeCrop(v2.Transform):
    """Crop a random region whose width and height are drawn independently in
    [min_size, min(side, max_size)] (sides shorter than ``min_size`` are kept whole)."""

    def __init__(self, min_size: int, max_size: int):
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size = int(min_size)
        self.max_size = int(max_size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_width = self._draw(width)
        crop_height = self._draw(height)
        top = int(torch.randint(height - crop_height + 1, ()))
        left = int(torch.randint(width - crop_width + 1, ()))
        return {"top": top, "left": left, "height": crop_height, "width": crop_width}

    def _draw(self, side: int) -> int:
        low, high = min(self.min_size, side), min(side, self.max_size)
        return int(torch.randint(low, high + 1, ()))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def train_augmentation(min_sizes: Sequence[int], max_size: int | None, flip: bool = True,
                       crop_resize_sizes: Sequence[int] | None = None,
                       crop_size: Sequence[int] | None = None) -> v2.Compose:
    """The official training augmentation; the crop branch only when ``crop_resize_sizes`` is given."""
    steps: list[v2.Transform] = [v2.RandomHorizontalFlip(p=0.5)] if flip else []
    multi_scale = ResizeShortestEdge(min_sizes, max_size)
    if crop_resize_sizes:
        if crop_size is None or len(crop_size) != 2:
            raise ValueError(f"crop_size must be [min, max], got {crop_size!r}")
        crop_branch = v2.Compose([ResizeShortestEdge(crop_resize_sizes), RandomSizeCrop(*crop_size), multi_scale])
        steps.append(v2.RandomChoice([multi_scale, crop_branch]))
    else:
        steps.append(multi_scale)
    steps.append(v2.SanitizeBoundingBoxes())
    return v2.Compose(steps)


def eval_augmentation(min_size: int, max_size: int | None) -> v2.Compose:
    """The deterministic test resize."""
    return v2.Compose([ResizeShortestEdge([min_size], max_size)])


def build_augmentation(cfg: CfgNode, is_train: bool) -> v2.Compose:
    """The augmentation of ``cfg.INPUT`` for training or test."""
    if not is_train:
        return eval_augmentation(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    crop = cfg.INPUT.CROP
    return train_augmentation(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, flip=cfg.INPUT.RANDOM_FLIP,
                              crop_resize_sizes=crop.RESIZE if crop.ENABLED else None, crop_size=crop.SIZE)
