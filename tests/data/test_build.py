"""Loaders: same batches for any number of workers or ranks, exact resume, test sharding, empty-image filter."""
import itertools

import pytest
import torch

from ddetr_plugin.data import (DatasetError, build_test_loader, build_train_loader, get_training_records,
                               register_coco_instances)

from tests._support.coco_files import coco_doc, write_image, write_json


def _take(loader, count):
    return list(itertools.islice(iter(loader), count))


def _same(a: dict, b: dict) -> bool:
    return (a["image_id"] == b["image_id"] and torch.equal(a["image"], b["image"])
            and torch.equal(a["targets"]["boxes"], b["targets"]["boxes"])
            and torch.equal(a["targets"]["labels"], b["targets"]["labels"]))


def _same_batches(first, second) -> bool:
    return len(first) == len(second) and all(
        len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y)) for x, y in zip(first, second))


def test_batches_do_not_depend_on_worker_count(tiny_cfg):
    in_process = _take(build_train_loader(tiny_cfg), 4)
    tiny_cfg.DATALOADER.NUM_WORKERS = 2
    with_workers = _take(build_train_loader(tiny_cfg), 4)
    assert all(len(batch) == 4 for batch in in_process)
    assert _same_batches(in_process, with_workers)
    assert len({item["image_id"] for batch in in_process for item in batch}) > 8


def test_two_ranks_see_what_one_process_sees(tiny_cfg):
    single = _take(build_train_loader(tiny_cfg), 6)  # 24 samples: the epoch of 20 wraps
    ranks = [_take(build_train_loader(tiny_cfg, rank=r, world_size=2), 6) for r in range(2)]
    assert all(len(batch) == 2 for rank in ranks for batch in rank)
    assert _same_batches(single, [ranks[0][i] + ranks[1][i] for i in range(6)])


def test_resume_mid_epoch_equals_the_uninterrupted_stream(tiny_cfg):
    uninterrupted = _take(build_train_loader(tiny_cfg), 5)
    resumed = _take(build_train_loader(tiny_cfg, start_iter=3), 2)
    assert _same_batches(uninterrupted[3:], resumed)


def test_total_batch_must_divide_among_ranks(tiny_cfg):
    tiny_cfg.SOLVER.IMS_PER_BATCH = 5
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH = 5\) must be a positive multiple .* \(2\)"):
        build_train_loader(tiny_cfg, rank=0, world_size=2)


def test_test_loader_shards_cover_every_image_once(tiny_cfg, tiny_shapes):
    shards = [[batch for batch in build_test_loader(tiny_cfg, tiny_shapes, rank=r, world_size=3)] for r in range(3)]
    ids = [item["image_id"] for shard in shards for batch in shard for item in batch]
    assert ids == list(range(1, 21))
    assert all(len(batch) == 1 for shard in shards for batch in shard)
    first = shards[0][0][0]
    assert first["image"].shape == (3, 96, 96) and (first["height"], first["width"]) == (128, 128)


def test_filter_empty_annotations(tmp_path, tiny_cfg):
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name, 50, 100)
    images = [{"id": i, "file_name": name, "height": 50, "width": 100}
              for i, name in enumerate(["a.png", "b.png", "c.png"], start=1)]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]},
                   {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 9, 9], "iscrowd": 1}]
    register_coco_instances("test_build_negatives", write_json(tmp_path / "n.json", coco_doc(images, annotations)),
                            tmp_path)
    kept = get_training_records(["test_build_negatives"], filter_empty=False)
    assert [r["image_id"] for r in kept] == [1, 2, 3]
    assert [r["image_id"] for r in get_training_records(["test_build_negatives"], filter_empty=True)] == [1]
    tiny_cfg.DATASETS.TRAIN = ["test_build_negatives"]
    tiny_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
    batch = next(iter(build_train_loader(tiny_cfg)))
    assert {item["image_id"] for item in batch} == {1}


def test_datasets_with_different_classes_cannot_train_together(tmp_path, tiny_shapes):
    register_coco_instances("test_build_other_classes", write_json(tmp_path / "o.json", coco_doc()), tmp_path)
    with pytest.raises(DatasetError, match="different classes"):
        get_training_records([tiny_shapes, "test_build_other_classes"], filter_empty=False)


def _register_sparse_ids(tmp_path, name, category_ids=(1, 3, 7)):
    """Two images whose boxes have the categories ``category_ids`` (names a, b, c), as (name, raw ids by image)."""
    for file_name in ("a.png", "b.png"):
        write_image(tmp_path / file_name, 50, 100)
    images = [{"id": i, "file_name": file_name, "height": 50, "width": 100}
              for i, file_name in enumerate(["a.png", "b.png"], start=1)]
    first, second, third = category_ids
    raw = {1: [third, first], 2: [second]}
    annotations = [{"id": 10 * image_id + k, "image_id": image_id, "category_id": category_id,
                    "bbox": [5 + 20 * k, 5, 15, 20]}
                   for image_id, ids in raw.items() for k, category_id in enumerate(ids)]
    categories = [{"id": category_id, "name": n} for category_id, n in zip(category_ids, "abc")]
    register_coco_instances(name, write_json(tmp_path / f"{name}.json", coco_doc(images, annotations, categories)),
                            tmp_path)
    return raw


def test_labels_follow_the_label_space(tmp_path, tiny_cfg):
    raw = _register_sparse_ids(tmp_path, "test_build_sparse_ids")
    tiny_cfg.DATASETS.TRAIN = ["test_build_sparse_ids"]
    tiny_cfg.INPUT.CROP.ENABLED = False  # a crop could drop a box
    tiny_cfg.SOLVER.IMS_PER_BATCH = 2
    contiguous = {1: 0, 3: 1, 7: 2}

    tiny_cfg.MODEL.NUM_CLASSES = 3
    batch = next(iter(build_train_loader(tiny_cfg)))
    assert {item["image_id"] for item in batch} == {1, 2}
    for item in batch:
        assert item["targets"]["labels"].tolist() == [contiguous[i] for i in raw[item["image_id"]]]

    tiny_cfg.MODEL.LABEL_SPACE, tiny_cfg.MODEL.NUM_CLASSES = "category_id", 8
    for item in next(iter(build_train_loader(tiny_cfg))):
        assert item["targets"]["labels"].tolist() == raw[item["image_id"]]
    for (item,) in build_test_loader(tiny_cfg, "test_build_sparse_ids"):
        assert item["targets"]["labels"].tolist() == raw[item["image_id"]]

    tiny_cfg.MODEL.NUM_CLASSES = 7
    with pytest.raises(ValueError, match="MODEL.NUM_CLASSES is 7, too small for MODEL.LABEL_SPACE 'category_id' "
                                         "on dataset 'test_build_sparse_ids'"):
        build_train_loader(tiny_cfg)


def test_datasets_with_other_category_ids_cannot_train_together_in_category_id_space(tmp_path, tiny_cfg):
    _register_sparse_ids(tmp_path, "test_build_ids_137")
    _register_sparse_ids(tmp_path, "test_build_ids_246", category_ids=(2, 4, 6))
    tiny_cfg.DATASETS.TRAIN = ["test_build_ids_137", "test_build_ids_246"]
    tiny_cfg.MODEL.NUM_CLASSES = 8
    build_train_loader(tiny_cfg)  # same classes: contiguous labels agree
    tiny_cfg.MODEL.LABEL_SPACE = "category_id"
    with pytest.raises(DatasetError, match=r"'test_build_ids_137' and 'test_build_ids_246' give their classes "
                                           r"different category ids \(\[1, 3, 7\] vs \[2, 4, 6\]\)"):
        build_train_loader(tiny_cfg)
