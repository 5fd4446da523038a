"""COCO loading: record format, category mapping, box cleaning, and clear errors on bad files (incl. a fuzz test)."""
import copy
import logging
import math
import os
import random

import pytest

from ddetr_plugin.data import DatasetError, load_coco_json

from tests._support.coco_files import coco_doc, write_json


def test_records_and_categories(tmp_path):
    doc = coco_doc(
        images=[{"id": 7, "file_name": "sub/b.jpg", "height": 50, "width": 100},
                {"id": 3, "file_name": "a.jpg", "height": 60.0, "width": 80}],  # integral floats are accepted
        annotations=[{"id": 1, "image_id": 7, "category_id": 9, "bbox": [10, 5, 20, 15]},
                     {"id": 2, "image_id": 7, "category_id": 4, "bbox": [0.5, 1.5, 2.25, 3], "iscrowd": 1},
                     {"id": 3, "image_id": 3, "category_id": 9, "bbox": [1, 2, 3, 4], "iscrowd": False}],
        categories=[{"id": 9, "name": "zebra"}, {"id": 4, "name": "ant"}])
    records, categories = load_coco_json(write_json(tmp_path / "a.json", doc), "/images")
    assert categories == [{"id": 4, "name": "ant"}, {"id": 9, "name": "zebra"}]
    assert [r["image_id"] for r in records] == [7, 3]  # the file's order
    first = records[0]
    assert first["file_name"] == os.path.join("/images", "sub/b.jpg")
    assert (first["height"], first["width"]) == (50, 100)
    assert first["annotations"] == [
        {"bbox": [10.0, 5.0, 30.0, 20.0], "category_id": 1, "iscrowd": 0},
        {"bbox": [0.5, 1.5, 2.75, 4.5], "category_id": 0, "iscrowd": 1},  # crowd kept, flagged
    ]
    assert records[1]["height"] == 60 and isinstance(records[1]["height"], int)
    assert records[1]["annotations"] == [{"bbox": [1.0, 2.0, 4.0, 6.0], "category_id": 1, "iscrowd": 0}]


def test_degenerate_boxes_dropped_with_one_warning_and_partial_boxes_clipped(tmp_path, caplog):
    boxes = [[10, 5, 0, 10],      # zero width
             [10, 5, 10, -3],     # negative height
             [200, 5, 10, 10],    # entirely right of the 100-px wide image: empty after clipping
             [-5, -5, 20, 20],    # partly outside: clipped to [0, 0, 15, 15]
             [90, 40, 20, 20],    # partly outside: clipped to [90, 40, 100, 50]
             [1, 1, 2, 2]]
    doc = coco_doc(annotations=[{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box}
                                for i, box in enumerate(boxes)])
    with caplog.at_level(logging.WARNING, logger="ddetr_plugin.data.coco"):
        records, _ = load_coco_json(write_json(tmp_path / "boxes.json", doc), "")
    assert [obj["bbox"] for obj in records[0]["annotations"]] == [[0, 0, 15, 15], [90, 40, 100, 50], [1, 1, 3, 3]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "boxes.json" in message and "dropped 3 of 6" in message and "clipped 2" in message


def test_images_without_annotations_are_kept(tmp_path):
    doc = coco_doc(images=[{"id": 1, "file_name": "a.png", "height": 5, "width": 5},
                           {"id": 2, "file_name": "b.png", "height": 5, "width": 5}])
    del doc["annotations"][0]
    del doc["annotations"]  # a file with no "annotations" at all (e.g. an unlabelled split)
    records, _ = load_coco_json(write_json(tmp_path / "a.json", doc), "")
    assert [r["annotations"] for r in records] == [[], []]


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "a.png"}]}')
    with pytest.raises(DatasetError, match=r"broken\.json: malformed JSON at line 2, column 12"):
        load_coco_json(path, "")


def test_unparseable_number_names_file(tmp_path):
    path = tmp_path / "digits.json"
    path.write_text('{"images": [{"id": 1' + "0" * 5000 + "}]}")  # beyond Python's int-parsing limit
    with pytest.raises(DatasetError, match=r"digits\.json: cannot parse JSON"):
        load_coco_json(path, "")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"annotation file .*nothing\.json does not exist"):
        load_coco_json(tmp_path / "nothing.json", "")


def test_undeclared_category_names_id_and_file(tmp_path):
    doc = coco_doc(annotations=[{"id": 5, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(DatasetError) as info:
        load_coco_json(write_json(tmp_path / "cats.json", doc), "")
    message = str(info.value)
    assert "category id 99" in message and "cats.json" in message and "annotation id 5" in message


def _image(**changes):
    image = {"id": 1, "file_name": "a.png", "height": 50, "width": 100}
    image.update(changes)
    return {k: v for k, v in image.items() if v is not _DELETE}


def _annotation(**changes):
    annotation = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 15], "iscrowd": 0}
    annotation.update(changes)
    return {k: v for k, v in annotation.items() if v is not _DELETE}


_DELETE = object()
BAD_DOCUMENTS = {
    "top level a list": ([], ["top level must be a JSON object"]),
    "no images": ({"categories": []}, ["'images'"]),
    "images not a list": (coco_doc() | {"images": {"id": 1}}, ["'images' must be a list"]),
    "image not an object": (coco_doc(images=[3]), ["image #0", "must be a JSON object"]),
    "image without id": (coco_doc(images=[_image(id=_DELETE)]), ["image #0", "'id'"]),
    "image id a string": (coco_doc(images=[_image(id="1")]), ["image #0", "'id'", "integer"]),
    "missing width": (coco_doc(images=[_image(width=_DELETE)]), ["image id 1", "missing field 'width'"]),
    "width a string": (coco_doc(images=[_image(width="100")]), ["image id 1", "'width'", "integer"]),
    "width NaN": (coco_doc(images=[_image(width=math.nan)]), ["image id 1", "'width'"]),
    "width huge": (coco_doc(images=[_image(width=10**12)]), ["image id 1", "'width'", "100000"]),
    "height zero": (coco_doc(images=[_image(height=0)]), ["image id 1", "'height'"]),
    "height bool": (coco_doc(images=[_image(height=True)]), ["image id 1", "'height'"]),
    "file_name missing": (coco_doc(images=[_image(file_name=_DELETE)]), ["image id 1", "'file_name'"]),
    "file_name a number": (coco_doc(images=[_image(file_name=3)]), ["image id 1", "'file_name'"]),
    "duplicate image id": (coco_doc(images=[_image(), _image()]), ["image id 1", "another image"]),
    "annotation without id": (coco_doc(annotations=[_annotation(id=_DELETE)]), ["annotation #0", "'id'"]),
    "annotation of no image": (coco_doc(annotations=[_annotation(image_id=2)]), ["annotation id 5", "'image_id'"]),
    "bbox missing": (coco_doc(annotations=[_annotation(bbox=_DELETE)]), ["annotation id 5", "'bbox'"]),
    "bbox NaN": (coco_doc(annotations=[_annotation(bbox=[1, math.nan, 2, 2])]), ["annotation id 5", "'bbox'"]),
    "bbox infinite": (coco_doc(annotations=[_annotation(bbox=[1, 1, math.inf, 2])]), ["annotation id 5", "'bbox'"]),
    "bbox sum overflows": (coco_doc(annotations=[_annotation(bbox=[1e308, 1, 1e308, 2])]), ["annotation id 5"]),
    "bbox huge int": (coco_doc(annotations=[_annotation(bbox=[10**400, 1, 1, 1])]), ["annotation id 5", "'bbox'"]),
    "bbox of 3": (coco_doc(annotations=[_annotation(bbox=[1, 1, 2])]), ["annotation id 5", "'bbox'"]),
    "bbox strings": (coco_doc(annotations=[_annotation(bbox=["1", 1, 2, 2])]), ["annotation id 5", "'bbox'"]),
    "bbox a dict": (coco_doc(annotations=[_annotation(bbox={"x": 1})]), ["annotation id 5", "'bbox'"]),
    "iscrowd 2": (coco_doc(annotations=[_annotation(iscrowd=2)]), ["annotation id 5", "'iscrowd'"]),
    "iscrowd a string": (coco_doc(annotations=[_annotation(iscrowd="0")]), ["annotation id 5", "'iscrowd'"]),
    "category id negative": (coco_doc(annotations=[_annotation(category_id=-1)]), ["annotation id 5",
                                                                                   "'category_id'"]),
    "duplicate annotation id": (coco_doc(annotations=[_annotation(), _annotation()]), ["annotation id 5",
                                                                                       "another annotation"]),
    "category without name": (coco_doc(categories=[{"id": 1}]), ["category id 1", "'name'"]),
    "category declared twice": (coco_doc(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
                                ["category id 1", "twice"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_fields_raise_dataset_error_naming_file_object_and_field(tmp_path, case):
    document, expected = BAD_DOCUMENTS[case]
    path = write_json(tmp_path / "bad.json", document)
    with pytest.raises(DatasetError) as info:
        load_coco_json(path, "")
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


_FUZZ_VALUES = [None, True, False, 0, 1, -1, 3.5, -7.25, 1e308, -1e308, math.nan, math.inf, -math.inf, 2**70,
                -(2**70), "", "x", "12", [], [1, 2, 3, 4], [1, "a", None, 2], {}, {"id": 1}, [[1]], 10**30]


def _mutate(rng: random.Random, node):
    """Replace, delete or insert one value somewhere in ``node`` (a JSON tree), in place when possible."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node))
        action = rng.random()
        if action < 0.25:
            del node[key]
        elif action < 0.6 and isinstance(node[key], (dict, list)):
            node[key] = _mutate(rng, node[key])
        else:
            node[key] = copy.deepcopy(rng.choice(_FUZZ_VALUES))
        return node
    if isinstance(node, list) and node and rng.random() < 0.8:
        index = rng.randrange(len(node))
        if rng.random() < 0.5 and isinstance(node[index], (dict, list)):
            node[index] = _mutate(rng, node[index])
        elif rng.random() < 0.5:
            node.append(copy.deepcopy(node[index]))  # duplicates ids
        else:
            node[index] = copy.deepcopy(rng.choice(_FUZZ_VALUES))
        return node
    return copy.deepcopy(rng.choice(_FUZZ_VALUES))


def _fuzz_base() -> dict:
    images = [{"id": i, "file_name": f"{i}.png", "height": 40 + i, "width": 60 - i} for i in range(1, 4)]
    annotations = [{"id": k, "image_id": 1 + k % 3, "category_id": 1 + k % 2, "bbox": [k, k / 2, 10 + k, 5],
                    "iscrowd": k % 2, "area": 50.0} for k in range(1, 7)]
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b", "supercategory": "s"}]
    return {"info": {"year": 2024}, "images": images, "annotations": annotations, "categories": categories}


def test_fuzz_random_documents_load_or_raise_dataset_error(tmp_path):
    rng = random.Random(1234)
    outcomes = {"loaded": 0, "rejected": 0}
    for case in range(400):
        document = _fuzz_base()
        for _ in range(rng.randint(1, 4)):
            document = _mutate(rng, document)
        path = write_json(tmp_path / f"fuzz{case}.json", document)
        if case % 10 == 0:  # a file cut short, as by an interrupted download
            text = path.read_text()
            path.write_text(text[: rng.randrange(len(text))])
        try:
            records, categories = load_coco_json(path, "root")
        except DatasetError as e:
            assert str(path) in str(e)
            outcomes["rejected"] += 1
            continue
        outcomes["loaded"] += 1
        for record in records:  # whatever loads is clean
            assert isinstance(record["height"], int) and record["height"] >= 1
            for obj in record["annotations"]:
                x0, y0, x1, y1 = obj["bbox"]
                assert 0 <= x0 < x1 <= record["width"] and 0 <= y0 < y1 <= record["height"]
                assert 0 <= obj["category_id"] < len(categories) and obj["iscrowd"] in (0, 1)
    # the fuzzer exercises both outcomes
    assert outcomes["loaded"] > 20 and outcomes["rejected"] > 100, outcomes
