"""DatasetMapper: output format, crowd handling, and randomness from (SEED, epoch, index) only."""
import pytest
import torch

from ddetr_plugin.data import DatasetError, DatasetMapper, get_dataset_dicts

from tests._support.coco_files import write_image


def _record(tmp_path, annotations):
    path = write_image(tmp_path / "img.png", height=60, width=80)
    return {"file_name": str(path), "height": 60, "width": 80, "image_id": 17, "annotations": annotations}


def test_output_format_and_crowd_boxes_left_out(tmp_path, tiny_cfg):
    record = _record(tmp_path, [{"bbox": [1.0, 2.0, 30.0, 40.0], "category_id": 0, "iscrowd": 0},
                                {"bbox": [5.0, 5.0, 50.0, 50.0], "category_id": 1, "iscrowd": 1},
                                {"bbox": [40.0, 10.0, 80.0, 60.0], "category_id": 2, "iscrowd": 0}])
    out = DatasetMapper(tiny_cfg, is_train=False)(record, epoch=0, index=0)
    assert set(out) == {"image", "height", "width", "image_id", "file_name", "targets"}
    assert (out["height"], out["width"], out["image_id"], out["file_name"]) == (60, 80, 17, record["file_name"])
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 96, 128)  # test resize: short side 96
    assert type(out["image"]) is torch.Tensor and type(out["targets"]["boxes"]) is torch.Tensor
    assert out["targets"]["labels"].tolist() == [0, 2] and out["targets"]["labels"].dtype == torch.int64
    scale = 96 / 60
    expected = torch.tensor([[1.0, 2.0, 30.0, 40.0], [40.0, 10.0, 80.0, 60.0]]) * scale
    torch.testing.assert_close(out["targets"]["boxes"], expected)
    assert out["targets"]["boxes"].dtype == torch.float32


def test_image_without_boxes(tmp_path, tiny_cfg):
    out = DatasetMapper(tiny_cfg, is_train=True)(_record(tmp_path, []), epoch=3, index=5)
    assert out["targets"]["boxes"].shape == (0, 4) and out["targets"]["labels"].shape == (0,)


def test_augmentation_depends_only_on_seed_epoch_and_index(tiny_cfg, tiny_shapes):
    records = get_dataset_dicts(tiny_shapes)
    mapper = DatasetMapper(tiny_cfg, is_train=True)

    def run(epoch, index):
        return mapper(records[index], epoch, index)

    torch.manual_seed(0)
    first = run(1, 4)
    state = torch.get_rng_state()
    torch.manual_seed(12345)  # a different global state must not matter
    second = run(1, 4)
    assert torch.equal(first["image"], second["image"])
    assert torch.equal(first["targets"]["boxes"], second["targets"]["boxes"])
    torch.manual_seed(0)
    run(1, 4)
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's generator is left where it was

    images = [run(epoch, 4)["image"] for epoch in range(8)]
    assert sum(not torch.equal(images[0], image) for image in images[1:]) >= 4  # the epoch changes it
    other_seed = DatasetMapper(tiny_cfg, is_train=True, seed=tiny_cfg.SEED + 1)
    assert any(not torch.equal(other_seed(records[i], 0, i)["image"], mapper(records[i], 0, i)["image"])
               for i in range(6))


def test_size_mismatch_is_reported(tmp_path, tiny_cfg):
    record = _record(tmp_path, [])
    record["width"] = 81
    with pytest.raises(DatasetError, match="img.png is 80x60"):
        DatasetMapper(tiny_cfg, is_train=False)(record, 0, 0)


def test_explicit_construction_without_cfg(tmp_path):
    with pytest.raises(ValueError, match="augmentation and seed"):
        DatasetMapper(None, is_train=True)
    mapper = DatasetMapper(None, is_train=False, augmentation=lambda sample: sample, seed=0)
    out = mapper(_record(tmp_path, [{"bbox": [1.0, 2.0, 3.0, 4.0], "category_id": 5, "iscrowd": 0}]), 0, 0)
    assert out["image"].shape == (3, 60, 80) and out["targets"]["boxes"].tolist() == [[1, 2, 3, 4]]


def test_label_map_translates_categories_and_is_required_outside_contiguous(tmp_path, tiny_cfg):
    record = _record(tmp_path, [{"bbox": [1.0, 2.0, 30.0, 40.0], "category_id": 2, "iscrowd": 0},
                                {"bbox": [40.0, 10.0, 80.0, 60.0], "category_id": 0, "iscrowd": 0}])
    mapper = DatasetMapper(tiny_cfg, is_train=False, label_map={0: 1, 1: 3, 2: 7})
    assert mapper(record, epoch=0, index=0)["targets"]["labels"].tolist() == [7, 1]
    tiny_cfg.MODEL.LABEL_SPACE = "category_id"
    with pytest.raises(ValueError, match="MODEL.LABEL_SPACE is 'category_id'; pass label_map="):
        DatasetMapper(tiny_cfg, is_train=False)
