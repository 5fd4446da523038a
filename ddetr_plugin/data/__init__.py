"""Data: dataset catalog, COCO loading, image reading, augmentation, mapper, samplers, loaders.

Knows no model: it produces lists of dicts {"image", "height", "width", "image_id",
"file_name", "targets"} that the meta-architecture pads and batches.
"""
from .build import build_test_loader, build_train_loader, get_training_records, training_label_space
from .builtin import datasets_root, register_builtin_datasets, register_shapes
from .catalog import (DatasetMetadata, UnknownDatasetError, get_dataset_dicts, get_metadata, list_datasets,
                      register_coco_instances, register_dataset, remove_dataset)
from .coco import load_coco_json
from .errors import DatasetError
from .image_io import read_image
from .label_space import CATEGORY_ID, CONTIGUOUS, LABEL_SPACES, LabelSpace, check_label_space_name
from .mapper import DatasetMapper
from .samplers import InferenceSampler, TrainingSampler
from .shapes import ShapesSpec, default_shapes_root, ensure_shapes, generate_shapes
from .transforms import build_augmentation, eval_augmentation, train_augmentation

register_builtin_datasets()

__all__ = [
    "CATEGORY_ID", "CONTIGUOUS", "DatasetError", "DatasetMapper", "DatasetMetadata", "InferenceSampler",
    "LABEL_SPACES", "LabelSpace", "ShapesSpec", "TrainingSampler", "UnknownDatasetError", "build_augmentation",
    "build_test_loader", "build_train_loader", "check_label_space_name", "datasets_root", "default_shapes_root",
    "ensure_shapes", "eval_augmentation", "generate_shapes", "get_dataset_dicts", "get_metadata",
    "get_training_records", "list_datasets", "load_coco_json", "read_image", "register_builtin_datasets",
    "register_coco_instances", "register_dataset", "register_shapes", "remove_dataset", "train_augmentation",
    "training_label_space",
]
