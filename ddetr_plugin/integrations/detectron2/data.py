"""The official Deformable DETR augmentation as detectron2 transforms, and the built-in shapes
datasets in detectron2's catalogs.

Training augmentation (``build_detr_train_augmentation``): horizontal flip (``INPUT.RANDOM_FLIP``),
then with probability 0.5 each either the multi-scale resize (shortest side one of
``INPUT.MIN_SIZE_TRAIN``, longest at most ``INPUT.MAX_SIZE_TRAIN``) or, with ``INPUT.CROP.ENABLED``,
resize (shortest side one of ``INPUT.CROP.RESIZE``) -> crop (``INPUT.CROP.TYPE``/``SIZE``, the
official "absolute_range" [384, 600]) -> the multi-scale resize. detectron2's ``DatasetMapper`` then
leaves crowd boxes out, removes boxes the crop emptied and keeps images without boxes (with
``DATALOADER.FILTER_EMPTY_ANNOTATIONS: False``).

Datasets of our catalog (``ddetr_plugin.data``) reach detectron2's catalogs by
``register_in_detectron2``; the built-in shapes are registered when the integration is imported.
"""
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets import load_coco_json

from ddetr_plugin.data import get_metadata

SHAPES_DATASETS = ("shapes_train", "shapes_val")


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


def register_in_detectron2(name: str) -> None:
    """Our catalog's COCO-format dataset ``name`` in detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

    Nothing is read until detectron2 first loads it; then our catalog's loader runs first (the
    built-in shapes are generated then), and detectron2's ``load_coco_json`` reads the records and
    sets the class names. ``Trainer.build_evaluator`` loads it before ``COCOEvaluator`` reads
    ``json_file`` from the metadata. A name detectron2 already has is left as it is.
    """
    if name in DatasetCatalog:
        return
    DatasetCatalog.register(name, lambda: _load_in_detectron2(name))
    MetadataCatalog.get(name).set(evaluator_type="coco")


def _load_in_detectron2(name: str) -> list[dict]:
    metadata = get_metadata(name)
    MetadataCatalog.get(name).set(json_file=metadata.json_file, image_root=metadata.image_root)
    return load_coco_json(metadata.json_file, metadata.image_root, name)


def register_shapes_datasets() -> None:
    """The built-in ``shapes_train`` / ``shapes_val`` in detectron2's catalogs."""
    for name in SHAPES_DATASETS:
        register_in_detectron2(name)
