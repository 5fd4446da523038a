"""The dataset catalog: names → records and metadata, loaded lazily.

A dataset is registered under a name with a loader (a callable returning
``(records, metadata)``); nothing is read until ``get_dataset_dicts(name)`` or
``get_metadata(name)`` first asks for it, and the result is cached for the life of
the process (data-loader workers inherit it). Records follow coco.py's format.
Like the component registries, this is the one piece of global state of the
package: user code registers its datasets at import time (config ``IMPORTS``).
"""
import dataclasses
import os
from typing import Callable

from .coco import load_coco_json

Loader = Callable[[], tuple[list[dict], "DatasetMetadata"]]


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What evaluation and visualisation need to know about a dataset.

    ``thing_classes[c]`` names contiguous category ``c``; the two dicts map the
    dataset's category ids to contiguous ids 0..C-1 and back.
    """

    name: str
    thing_classes: list[str]
    thing_dataset_id_to_contiguous_id: dict[int, int]
    contiguous_id_to_thing_dataset_id: dict[int, int]
    json_file: str
    image_root: str


class UnknownDatasetError(KeyError):
    """An unregistered dataset name; ``str()`` is the message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class CocoLoader:
    """Loads a COCO-format dataset; comparable, so registering the same files twice is harmless."""

    name: str
    json_file: str
    image_root: str

    def __call__(self) -> tuple[list[dict], DatasetMetadata]:
        return load_coco_dataset(self.name, self.json_file, self.image_root)


_LOADERS: dict[str, Loader] = {}
_LOADED: dict[str, tuple[list[dict], DatasetMetadata]] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Register ``loader`` under ``name``; re-registering an equal loader is a no-op.

    Raises:
        ValueError: ``name`` is already registered with a different loader.
    """
    if name in _LOADERS and _LOADERS[name] != loader:
        raise ValueError(f"dataset {name!r} is already registered ({_LOADERS[name]!r}); "
                         f"call remove_dataset({name!r}) first to replace it")
    _LOADERS[name] = loader


def register_coco_instances(name: str, json_file: str | os.PathLike, image_root: str | os.PathLike) -> None:
    """Register a COCO-format instance dataset: annotations in ``json_file``, images under ``image_root``.

    Class names (metadata ``thing_classes``) are the JSON's categories sorted by id.
    """
    register_dataset(name, CocoLoader(name, os.fspath(json_file), os.fspath(image_root)))


def load_coco_dataset(name: str, json_file: str, image_root: str) -> tuple[list[dict], DatasetMetadata]:
    """Records and metadata of a COCO-format dataset (for loaders of datasets found at load time)."""
    records, categories = load_coco_json(json_file, image_root)
    dataset_ids = [category["id"] for category in categories]
    metadata = DatasetMetadata(
        name=name, thing_classes=[category["name"] for category in categories],
        thing_dataset_id_to_contiguous_id={dataset_id: c for c, dataset_id in enumerate(dataset_ids)},
        contiguous_id_to_thing_dataset_id=dict(enumerate(dataset_ids)),
        json_file=json_file, image_root=image_root)
    return records, metadata


def remove_dataset(name: str) -> None:
    """Forget ``name`` and its cached records."""
    _check_registered(name)
    del _LOADERS[name]
    _LOADED.pop(name, None)


def list_datasets() -> list[str]:
    """Every registered name, sorted."""
    return sorted(_LOADERS)


def get_dataset_dicts(name: str) -> list[dict]:
    """The records of ``name``, loaded on first use and cached.

    The list is shared by every caller: treat it as read-only (the data loader
    serialises it and the mapper never modifies a record).

    Raises:
        UnknownDatasetError: ``name`` is not registered (the message lists the registered names).
        DatasetError: the dataset's files are missing or malformed.
    """
    return _load(name)[0]


def get_metadata(name: str) -> DatasetMetadata:
    """The metadata of ``name`` (loads the dataset on first use, since classes come from its file)."""
    return _load(name)[1]


def _load(name: str) -> tuple[list[dict], DatasetMetadata]:
    _check_registered(name)
    if name not in _LOADED:
        _LOADED[name] = _LOADERS[name]()
    return _LOADED[name]


def _check_registered(name: str) -> None:
    if name not in _LOADERS:
        raise UnknownDatasetError(f"no dataset named {name!r}; registered: {', '.join(list_datasets())} "
                                  f"(register your own with ddetr_plugin.data.register_coco_instances)")
