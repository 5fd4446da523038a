"""Our synthetic shapes dataset as mmdet ``CocoDataset``s, and a ``CocoMetric`` on its annotations.

The data lives where ``ddetr_plugin.data.shapes`` puts it (``$DDETR_DATASETS/shapes`` or the user
cache) and is generated on first use, so a config names a split instead of a path:
``dict(type='ShapesDataset', split='val', pipeline=...)``, ``dict(type='ShapesCocoMetric', split='val')``.
``root`` and ``spec`` (ShapesSpec fields) select another copy, e.g. a tiny one for tests.
"""
from pathlib import Path
from typing import Optional, Tuple

from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric
from mmdet.registry import DATASETS, METRICS

from ddetr_plugin.data.shapes import IMAGE_FOLDER, OBJECT_COLOURS, SHAPE_CLASSES, SPLITS, ShapesSpec, \
    default_shapes_root, ensure_shapes


def shapes_files(split: str = "train", root: Optional[str] = None, spec: Optional[dict] = None) -> Tuple[str, str]:
    """(annotation file, image folder) of a shapes split, generated first if absent.

    Args:
        split: "train" or "val" (the built-in ``shapes_train``/``shapes_val``).
        root: the split's folder instead of ``default_shapes_root() / split``.
        spec: ShapesSpec fields instead of the built-in split's (needs ``root``).
    """
    if spec is not None and root is None:
        raise ValueError("a shapes spec other than the built-in splits' needs its own root folder")
    if spec is None and split not in SPLITS:
        raise ValueError(f"shapes split {split!r}: expected one of {sorted(SPLITS)}")
    split_dir = Path(root) if root else default_shapes_root() / split
    json_file = ensure_shapes(split_dir, ShapesSpec(**spec) if spec else SPLITS[split])
    return str(json_file), str(split_dir / IMAGE_FOLDER)


@DATASETS.register_module()
class ShapesDataset(CocoDataset):
    """A shapes split as a ``CocoDataset`` (circle, square, triangle, cross: labels 0-3)."""

    METAINFO = {"classes": SHAPE_CLASSES, "palette": list(OBJECT_COLOURS[:len(SHAPE_CLASSES)])}

    def __init__(self, split: str = "train", root: Optional[str] = None, spec: Optional[dict] = None, **kwargs):
        ann_file, image_dir = shapes_files(split, root, spec)
        super().__init__(data_root="", ann_file=ann_file, data_prefix=dict(img=image_dir), **kwargs)


@METRICS.register_module()
class ShapesCocoMetric(CocoMetric):
    """``CocoMetric`` with the annotation file of a shapes split (so areas and crowd flags are the file's)."""

    def __init__(self, split: str = "val", root: Optional[str] = None, spec: Optional[dict] = None, **kwargs):
        super().__init__(ann_file=shapes_files(split, root, spec)[0], **kwargs)
