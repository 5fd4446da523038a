"""The official Deformable DETR augmentation as detectron2 transforms, and the built-in shapes
datasets in detectron2's catalogs.

Training augmentation (``build_detr_train_augmentation``): horizontal flip (``INPUT.RANDOM_FLIP``),
then with probability 0.5 each either the multi-scale resize (shortest side one of
``INPUT.MIN_SIZE_TRAIN``, longest at most ``INPUT.MAX_SIZE_TRAIN``) or, with ``INPUT.CROP.ENABLED``,
resize (shortest side one of ``INPUT.CROP.RESIZE``) -> crop (``INPUT.CROP.TYPE``/``SIZE``, the
official "absolute_range" [384, 600]) -> the multi-scale resize. detectron2's ``DatasetMapper`` then
leaves crowd boxes out, removes boxes the crop emptied and keeps images without boxes (with
``DATALOADER.FILTER_EMPTY_ANNOTATIONS: False``).
"""
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets import load_coco_json

from ddetr_plugin.data import get_metadata
from ddetr_plugin.data.shapes import ANNOTATION_FILE, IMAGE_FOLDER, SHAPE_CLASSES, default_shapes_root

SHAPES_DATASETS = {"shapes_train": "train", "shapes_val": "val"}


class RandomChoice(T.Augmentation):
    """Apply one of several augmentation sequences, chosen at random with the given probabilities."""

    def __init__(self, choices: list[list[T.Augmentation]], probabilities: list[float]):
        super().__init__()
        if len(choices) != len(probabilities) or abs(sum(probabilities) - 1.0) > 1e-6:
            raise ValueError(f"RandomChoice: one probability per choice, summing to 1; got {probabilities} for "
                             f"{len(choices)} choices")
        self.choices = [T.AugmentationList(choice) for choice in choices]
        self.probabilities = list(probabilities)

    def __call__(self, aug_input) -> T.Transform:
        index = np.random.choice(len(self.choices), p=self.probabilities)
        return self.choices[index](aug_input)


def build_detr_train_augmentation(cfg: CfgNode) -> list[T.Augmentation]:
    """The training augmentation of the module docstring, from a detectron2 config."""
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, sample_style="choice")
    augmentation = []
    if cfg.INPUT.RANDOM_FLIP != "none":
        augmentation.append(T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                                         vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    if cfg.INPUT.CROP.ENABLED:
        crop_branch = [T.ResizeShortestEdge(cfg.INPUT.CROP.RESIZE, sample_style="choice"),
                       T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE), resize]
        augmentation.append(RandomChoice([[resize], crop_branch], [0.5, 0.5]))
    else:
        augmentation.append(resize)
    return augmentation


def build_detr_train_mapper(cfg: CfgNode) -> DatasetMapper:
    """detectron2's ``DatasetMapper`` with ``build_detr_train_augmentation``."""
    return DatasetMapper(cfg, is_train=True, augmentations=build_detr_train_augmentation(cfg))


def _load_shapes(name: str) -> list[dict]:
    metadata = get_metadata(name)  # our catalog generates the split on first use
    return load_coco_json(metadata.json_file, metadata.image_root, name)


def register_shapes_datasets() -> None:
    """``shapes_train`` / ``shapes_val`` in detectron2's catalogs, generated when first loaded."""
    for name, split in SHAPES_DATASETS.items():
        if name in DatasetCatalog:
            continue
        split_dir = default_shapes_root() / split
        DatasetCatalog.register(name, lambda name=name: _load_shapes(name))
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_CLASSES), json_file=str(split_dir / ANNOTATION_FILE),
                                      image_root=str(split_dir / IMAGE_FOLDER), evaluator_type="coco")
