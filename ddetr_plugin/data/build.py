"""Data loaders for training and evaluation.

Both return a ``torch.utils.data.DataLoader`` whose batches are plain lists of
mapped dicts (see mapper.py); padding and masks are the model's business. The
records are pickled into one numpy buffer before the loader starts, so forked
workers do not touch (and gradually copy) millions of Python objects.
Randomness depends only on SEED, epoch and index (samplers.py, mapper.py), so the
batches are the same for any DATALOADER.NUM_WORKERS; the loaders also seed their
own ``torch.Generator`` so that starting one leaves the global RNG untouched.
"""
import pickle
from typing import Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset

from .catalog import get_dataset_dicts, get_metadata
from .errors import DatasetError
from .label_space import LabelSpace
from .mapper import DatasetMapper
from .samplers import InferenceSampler, TrainingSampler


def get_training_records(names: Sequence[str], filter_empty: bool) -> list[dict]:
    """The records of every dataset in ``names``, concatenated.

    Args:
        filter_empty: leave out images with no non-crowd box (otherwise they train as negatives).

    Raises:
        DatasetError: the datasets' classes differ, or no record is left.
    """
    if not names:
        raise DatasetError("DATASETS.TRAIN is empty: name at least one dataset")
    classes = get_metadata(names[0]).thing_classes
    records: list[dict] = []
    for name in names:
        if get_metadata(name).thing_classes != classes:
            raise DatasetError(f"datasets {names[0]!r} and {name!r} have different classes "
                               f"({classes} vs {get_metadata(name).thing_classes}); they cannot train together")
        records += get_dataset_dicts(name)
    if filter_empty:
        records = [r for r in records if any(not obj["iscrowd"] for obj in r["annotations"])]
    if not records:
        raise DatasetError(f"no training images in {list(names)}"
                           + (" with boxes (DATALOADER.FILTER_EMPTY_ANNOTATIONS is on)" if filter_empty else ""))
    return records


def build_train_loader(cfg: CfgNode, rank: int = 0, world_size: int = 1, start_iter: int = 0) -> DataLoader:
    """An endless loader of this rank's batches: lists of ``SOLVER.IMS_PER_BATCH / world_size`` mapped dicts.

    Iteration ``i`` of the loader is training iteration ``start_iter + i``; the union of
    all ranks' batches at an iteration is the batch one process would get (samplers.py).

    Target labels are in MODEL.LABEL_SPACE (label_space.py).

    Raises:
        ValueError: SOLVER.IMS_PER_BATCH is not a multiple of ``world_size``, or MODEL.NUM_CLASSES is
            too small for the datasets in MODEL.LABEL_SPACE.
        DatasetError: the datasets' classes, or in the "category_id" space their ids, differ.
    """
    records = get_training_records(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    label_space = training_label_space(cfg)
    sampler = TrainingSampler(len(records), cfg.SOLVER.IMS_PER_BATCH, cfg.SEED, rank=rank, world_size=world_size,
                              start_iter=start_iter)
    dataset = _MappedRecords(records, DatasetMapper(cfg, is_train=True, label_map=label_space.record_to_label))
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      collate_fn=_as_list, generator=torch.Generator().manual_seed(cfg.SEED))


def build_test_loader(cfg: CfgNode, dataset_name: str, rank: int = 0, world_size: int = 1) -> DataLoader:
    """This rank's contiguous shard of ``dataset_name`` in batches of one, test-resized.

    Every image appears exactly once over all ranks; batches are lists of one mapped dict, their target
    labels in MODEL.LABEL_SPACE.
    """
    records = get_dataset_dicts(dataset_name)
    label_map = LabelSpace.from_config(cfg, dataset_name).record_to_label
    dataset = _MappedRecords(records, DatasetMapper(cfg, is_train=False, label_map=label_map))
    workers = cfg.DATALOADER.NUM_WORKERS
    # Persistent workers: periodic evaluation reuses them instead of forking anew each time.
    return DataLoader(dataset, sampler=InferenceSampler(len(records), rank, world_size), batch_size=1,
                      num_workers=workers, persistent_workers=workers > 0, collate_fn=_as_list,
                      generator=torch.Generator().manual_seed(cfg.SEED))


def training_label_space(cfg: CfgNode) -> LabelSpace:
    """The label space of DATASETS.TRAIN, which must be the same for every one of them.

    Raises:
        ValueError: MODEL.LABEL_SPACE is unknown or MODEL.NUM_CLASSES too small (label_space.py).
        DatasetError: two datasets give a category different labels (same classes, different ids).
    """
    spaces = [LabelSpace.from_config(cfg, name) for name in cfg.DATASETS.TRAIN]
    for other in spaces[1:]:
        if other.record_to_label != spaces[0].record_to_label:
            raise DatasetError(
                f"datasets {spaces[0].dataset_name!r} and {other.dataset_name!r} give their classes different "
                f"category ids ({list(spaces[0].label_to_category_id.values())} vs "
                f"{list(other.label_to_category_id.values())}); with "
                f"MODEL.LABEL_SPACE {cfg.MODEL.LABEL_SPACE!r} they cannot train together")
    return spaces[0]


class _MappedRecords(Dataset):
    """Records kept as one pickled buffer; item ``(epoch, index)`` or ``index`` (epoch 0) is mapped."""

    def __init__(self, records: list[dict], mapper: DatasetMapper):
        blobs = [np.frombuffer(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for r in records]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
        self._mapper = mapper

    def __len__(self) -> int:
        return len(self._ends)

    def record(self, index: int) -> dict:
        begin = int(self._ends[index - 1]) if index > 0 else 0
        return pickle.loads(self._buffer[begin:int(self._ends[index])].tobytes())

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self._mapper(self.record(index), epoch, index)


def _as_list(batch: list[dict]) -> list[dict]:
    return batch
