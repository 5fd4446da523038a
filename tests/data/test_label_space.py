"""MODEL.LABEL_SPACE: record category -> label, label -> category id, names, and the checks."""
import pytest

from ddetr_plugin.config import get_cfg
from ddetr_plugin.data import LabelSpace, get_metadata, register_coco_instances, remove_dataset

from tests._support.coco_files import coco_doc, write_json

SPARSE = "test_label_space_sparse"
# ids 1, 3, 7 declared out of order: records number them 0, 1, 2 in id order
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 1, "name": "ant"}, {"id": 3, "name": "bee"}]


@pytest.fixture
def sparse(tmp_path):
    register_coco_instances(SPARSE, write_json(tmp_path / "sparse.json", coco_doc(categories=CATEGORIES)), tmp_path)
    yield get_metadata(SPARSE)
    remove_dataset(SPARSE)


def test_contiguous_labels_are_the_categories_in_id_order(sparse):
    labels = LabelSpace.from_metadata("contiguous", sparse, num_classes=5)
    assert labels.record_to_label == {0: 0, 1: 1, 2: 2}
    assert labels.label_to_category_id == {0: 1, 1: 3, 2: 7}
    assert labels.class_names == ["ant", "bee", "cat", "class_3", "class_4"]


def test_category_id_labels_are_the_dataset_ids(sparse):
    labels = LabelSpace.from_metadata("category_id", sparse, num_classes=8)
    assert labels.record_to_label == {0: 1, 1: 3, 2: 7}
    assert labels.label_to_category_id == {1: 1, 3: 3, 7: 7}
    assert labels.class_names == ["class_0", "ant", "class_2", "bee", "class_4", "class_5", "class_6", "cat"]


def test_from_config_reads_the_two_keys(sparse):
    cfg = get_cfg()
    cfg.MODEL.LABEL_SPACE, cfg.MODEL.NUM_CLASSES = "category_id", 10
    labels = LabelSpace.from_config(cfg, SPARSE)
    assert (labels.space, labels.num_classes, labels.dataset_name) == ("category_id", 10, SPARSE)
    assert len(labels.class_names) == 10 and labels.label_to_category_id == {1: 1, 3: 3, 7: 7}


def test_too_few_classes_name_the_keys_the_dataset_and_what_it_needs(sparse):
    # enough for 3 contiguous labels, not for id 7
    with pytest.raises(ValueError) as info:
        LabelSpace.from_metadata("category_id", sparse, num_classes=7)
    message = str(info.value)
    for part in ("MODEL.NUM_CLASSES is 7", "MODEL.LABEL_SPACE 'category_id'", repr(SPARSE),
                 "largest category id is 7", "MODEL.NUM_CLASSES 8"):
        assert part in message
    with pytest.raises(ValueError, match=rf"MODEL.NUM_CLASSES is 2, fewer than the 3 categories of dataset "
                                         rf"'{SPARSE}' \(MODEL.LABEL_SPACE 'contiguous'"):
        LabelSpace.from_metadata("contiguous", sparse, num_classes=2)


def test_unknown_label_space_lists_the_choices(sparse):
    with pytest.raises(ValueError, match="MODEL.LABEL_SPACE must be one of 'contiguous', 'category_id', got 'coco'"):
        LabelSpace.from_metadata("coco", sparse, num_classes=91)
