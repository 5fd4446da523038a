"""Built-in dataset names, resolved when first loaded (so DDETR_DATASETS may be set late).

- "coco_2017_train", "coco_2017_val": ``$DDETR_DATASETS/coco/annotations/instances_{train,val}2017.json``
  with images in ``$DDETR_DATASETS/coco/{train,val}2017/``; DDETR_DATASETS defaults to ``./datasets``.
- "shapes_train", "shapes_val": the synthetic dataset of shapes.py (3000 / 300 images),
  generated on first use under ``shapes.default_shapes_root()``.
"""
import dataclasses
import os
from pathlib import Path

from .catalog import DatasetMetadata, load_coco_dataset, register_dataset
from .errors import DatasetError
from .shapes import IMAGE_FOLDER, SPLITS, ShapesSpec, default_shapes_root, ensure_shapes


def datasets_root() -> Path:
    """``$DDETR_DATASETS``, or ``./datasets`` when unset."""
    return Path(os.environ.get("DDETR_DATASETS") or "datasets")


@dataclasses.dataclass(frozen=True)
class Coco2017Loader:
    name: str
    split: str  # "train" or "val"

    def __call__(self) -> tuple[list[dict], DatasetMetadata]:
        root = datasets_root() / "coco"
        json_file = root / "annotations" / f"instances_{self.split}2017.json"
        if not json_file.is_file():
            raise DatasetError(f"dataset {self.name!r} needs {json_file} (and images in {root / (self.split + '2017')}"
                               f"); set DDETR_DATASETS to the folder that holds coco/")
        return load_coco_dataset(self.name, str(json_file), str(root / f"{self.split}2017"))


@dataclasses.dataclass(frozen=True)
class ShapesLoader:
    name: str
    spec: ShapesSpec
    split_dir: str  # absolute, or relative to default_shapes_root()

    def __call__(self) -> tuple[list[dict], DatasetMetadata]:
        split_dir = default_shapes_root() / self.split_dir
        json_file = ensure_shapes(split_dir, self.spec)
        return load_coco_dataset(self.name, str(json_file), str(split_dir / IMAGE_FOLDER))


def register_shapes(name: str, spec: ShapesSpec, split_dir: str | os.PathLike) -> None:
    """Register a shapes dataset generated from ``spec`` into ``split_dir`` on first use.

    ``split_dir`` is absolute, or relative to ``default_shapes_root()`` (resolved at
    first use). Tests use it for tiny variants, e.g. ``ShapesSpec(num_images=20, seed=0)``.
    """
    register_dataset(name, ShapesLoader(name, spec, os.fspath(split_dir)))


def register_builtin_datasets() -> None:
    for split in ("train", "val"):
        register_dataset(f"coco_2017_{split}", Coco2017Loader(f"coco_2017_{split}", split))
        register_shapes(f"shapes_{split}", SPLITS[split], split)
