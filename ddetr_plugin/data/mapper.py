"""DatasetMapper: a dataset record → the model's input dict (image read, augmented, targets built).

Augmentation randomness derives only from (seed, epoch, index): the mapper seeds
torch's CPU generator with ``derive_seed(seed, epoch, index)`` inside
``torch.random.fork_rng``, so a sample is augmented the same way in any process,
data-loader worker or number of ranks, and the caller's random state is untouched.
"""
from typing import Callable, Mapping

import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors

from .image_io import read_image
from .label_space import CONTIGUOUS
from .seeding import derive_seed
from .transforms import build_augmentation


class DatasetMapper:
    """Callable ``(record, epoch, index) -> dict`` with

    - "image": (3, H, W) uint8 RGB, augmented/resized;
    - "height", "width": the original image size (to rescale predictions to);
    - "image_id", "file_name": from the record;
    - "targets": {"boxes": (K, 4) float32 absolute xyxy in the resized image, "labels": (K,) int64}
      (crowd annotations left out; also produced for evaluation, where the model ignores them).
      Labels are ``label_map[record category_id]``; without a map, the records' contiguous categories.

    Build it from a config, ``DatasetMapper(cfg, is_train, label_map=...)``, or from explicit
    arguments, ``DatasetMapper(None, is_train, augmentation=..., seed=...)``. The label map is
    ``LabelSpace.record_to_label`` of the dataset (label_space.py); the data loaders pass it.
    """

    def __init__(self, cfg: CfgNode | None, is_train: bool, *, augmentation: Callable[[dict], dict] | None = None,
                 seed: int | None = None, label_map: Mapping[int, int] | None = None):
        if cfg is not None:
            augmentation = augmentation if augmentation is not None else build_augmentation(cfg, is_train)
            seed = seed if seed is not None else cfg.SEED
            # without a map the labels would silently stay contiguous
            if label_map is None and cfg.MODEL.LABEL_SPACE != CONTIGUOUS:
                raise ValueError(f"DatasetMapper: MODEL.LABEL_SPACE is {cfg.MODEL.LABEL_SPACE!r}; pass "
                                 f"label_map=LabelSpace.from_config(cfg, dataset_name).record_to_label")
        if augmentation is None or seed is None:
            raise ValueError("DatasetMapper needs a cfg, or both augmentation and seed")
        self.is_train = is_train
        self.augmentation = augmentation
        self.seed = int(seed)
        self.label_map = dict(label_map) if label_map is not None else None

    def __call__(self, record: dict, epoch: int, index: int) -> dict:
        height, width = record["height"], record["width"]
        image = read_image(record["file_name"], expected_size=(height, width))
        objects = [obj for obj in record.get("annotations", []) if not obj.get("iscrowd", 0)]
        boxes = torch.tensor([obj["bbox"] for obj in objects], dtype=torch.float32).reshape(-1, 4)
        categories = [obj["category_id"] for obj in objects]
        if self.label_map is not None:
            categories = [self.label_map[category] for category in categories]
        labels = torch.tensor(categories, dtype=torch.int64)
        sample = {"image": tv_tensors.Image(image),
                  "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
                  "labels": labels}
        # fork_rng restores the CPU generator afterwards; seeding only the CPU generator
        # (not torch.manual_seed) leaves CUDA generators alone.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(derive_seed(self.seed, epoch, index))
            sample = self.augmentation(sample)
        return {"image": sample["image"].as_subclass(torch.Tensor), "height": height, "width": width,
                "image_id": record["image_id"], "file_name": record["file_name"],
                "targets": {"boxes": sample["boxes"].as_subclass(torch.Tensor), "labels": sample["labels"]}}
