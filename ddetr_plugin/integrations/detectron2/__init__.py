"""Deformable DETR inside detectron2. Importing this package registers:

- ``DeformableDETR`` in detectron2's ``META_ARCH_REGISTRY`` (``MODEL.META_ARCHITECTURE: DeformableDETR``);
- the built-in ``shapes_train`` / ``shapes_val`` in detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

Use ``add_deformable_detr_config(cfg)`` on a detectron2 config before merging a YAML of
``configs/detectron2/``, and ``Trainer`` (a ``DefaultTrainer``) to train and evaluate;
``tools/train_detectron2.py`` does both.
"""
try:
    import detectron2  # noqa: F401
except ImportError as error:
    raise ImportError(
        "ddetr_plugin.integrations.detectron2 needs detectron2, which is not on the package index: build it "
        "from its source against your torch (pip install --no-build-isolation <a clone of "
        "github.com/facebookresearch/detectron2>), or install a wheel built that way"
    ) from error

from .config import KEY_MAP, add_deformable_detr_config, to_ddetr_cfg
from .data import (build_detr_train_augmentation, build_detr_train_mapper, register_in_detectron2,
                   register_shapes_datasets)
from .meta_arch import DeformableDETR
from .trainer import Trainer, with_full_model_clipping

register_shapes_datasets()

__all__ = [
    "KEY_MAP",
    "DeformableDETR",
    "Trainer",
    "add_deformable_detr_config",
    "build_detr_train_augmentation",
    "build_detr_train_mapper",
    "register_in_detectron2",
    "register_shapes_datasets",
    "to_ddetr_cfg",
    "with_full_model_clipping",
]
