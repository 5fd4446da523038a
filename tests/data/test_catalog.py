"""Dataset catalog: registration, metadata, lazy cached loading, unknown names, built-in names and roots."""
import pytest

from ddetr_plugin.data import (DatasetError, ShapesSpec, UnknownDatasetError, datasets_root, get_dataset_dicts,
                               get_metadata, list_datasets, register_builtin_datasets, register_coco_instances,
                               register_shapes, remove_dataset)

from tests._support.coco_files import coco_doc, write_json


@pytest.fixture
def fresh_names():
    """Names registered by a test are removed afterwards; built-ins are restored with an empty cache."""
    before = set(list_datasets())
    yield
    for name in set(list_datasets()) - before:
        remove_dataset(name)
    for name in ("coco_2017_train", "coco_2017_val", "shapes_train", "shapes_val"):
        remove_dataset(name)
    register_builtin_datasets()


def test_register_coco_instances_and_metadata(tmp_path, fresh_names):
    doc = coco_doc(categories=[{"id": 20, "name": "dog"}, {"id": 1, "name": "cat"}, {"id": 5, "name": "emu"}],
                   annotations=[{"id": 1, "image_id": 1, "category_id": 20, "bbox": [1, 1, 2, 2]}])
    json_file = write_json(tmp_path / "pets.json", doc)
    register_coco_instances("test_pets", json_file, tmp_path / "img")
    metadata = get_metadata("test_pets")
    assert metadata.thing_classes == ["cat", "emu", "dog"]
    assert metadata.thing_dataset_id_to_contiguous_id == {1: 0, 5: 1, 20: 2}
    assert metadata.contiguous_id_to_thing_dataset_id == {0: 1, 1: 5, 2: 20}
    assert (metadata.json_file, metadata.image_root) == (str(json_file), str(tmp_path / "img"))
    assert get_dataset_dicts("test_pets")[0]["annotations"][0]["category_id"] == 2
    register_coco_instances("test_pets", json_file, tmp_path / "img")  # the same again: harmless
    with pytest.raises(ValueError, match="'test_pets' is already registered"):
        register_coco_instances("test_pets", json_file, tmp_path / "other")


def test_loading_is_lazy_and_cached(tmp_path, fresh_names):
    json_file = tmp_path / "later.json"
    register_coco_instances("test_later", json_file, tmp_path)  # the file does not exist yet: fine
    with pytest.raises(DatasetError, match="later.json does not exist"):
        get_dataset_dicts("test_later")
    write_json(json_file, coco_doc())
    records = get_dataset_dicts("test_later")
    json_file.write_text("garbage")  # cached: not read again
    assert get_dataset_dicts("test_later") is records


def test_unknown_name_lists_registered_names():
    with pytest.raises(UnknownDatasetError) as info:
        get_dataset_dicts("cooc_2017_train")
    message = str(info.value)
    assert "'cooc_2017_train'" in message
    for name in ("coco_2017_train", "coco_2017_val", "shapes_train", "shapes_val"):
        assert name in message


def test_coco_2017_under_ddetr_datasets(tmp_path, monkeypatch, fresh_names):
    monkeypatch.setenv("DDETR_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match=r"instances_val2017\.json .*set DDETR_DATASETS"):
        get_dataset_dicts("coco_2017_val")
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    write_json(tmp_path / "coco" / "annotations" / "instances_val2017.json", coco_doc())
    records = get_dataset_dicts("coco_2017_val")
    assert records[0]["file_name"] == str(tmp_path / "coco" / "val2017" / "a.png")
    assert get_metadata("coco_2017_val").thing_classes == ["thing"]


def test_default_coco_root_is_local_datasets_folder(monkeypatch):
    monkeypatch.delenv("DDETR_DATASETS", raising=False)
    assert str(datasets_root()) == "datasets"


def test_relative_shapes_folder_resolves_under_ddetr_datasets(tmp_path, monkeypatch, fresh_names):
    monkeypatch.setenv("DDETR_DATASETS", str(tmp_path))
    register_shapes("test_small_shapes", ShapesSpec(num_images=3, seed=0), "small")
    records = get_dataset_dicts("test_small_shapes")
    assert len(records) == 3 and (tmp_path / "shapes" / "small" / "instances.json").is_file()
    assert records[0]["file_name"] == str(tmp_path / "shapes" / "small" / "images" / "000001.png")
    assert get_metadata("test_small_shapes").thing_classes == ["circle", "square", "triangle", "cross"]
