"""COCO-format instance annotations → dataset records.

A record is one image::

    {"file_name": str (image_root joined with the JSON's file_name), "height": int, "width": int,
     "image_id": int, "annotations": [{"bbox": [x0, y0, x1, y1] absolute float pixels,
                                       "category_id": contiguous int in 0..C-1, "iscrowd": 0 or 1}]}

Categories are numbered contiguously in the order of their dataset ids; crowd
annotations stay in the record (evaluation needs them) and the mapper leaves them
out of training targets, as the official implementation does.

Annotation files come from many tools and are often messy, so every field is
checked before use and every problem is a :class:`DatasetError` naming the file,
the image or annotation id and the field:

- malformed JSON: the line and column;
- missing fields, wrong types, NaN/infinite or out-of-range numbers, duplicate ids,
  annotations of unknown images, category ids used but not declared;
- boxes with zero or negative width/height (also after clipping) are dropped with
  one warning per file that counts them; boxes partly outside their image are clipped;
- images without annotations are kept (they train as negatives).

Image files are not opened here: a missing or unreadable file is reported when it
is first read (see image_io.py).
"""
import contextlib
import io
import json
import logging
import math
import os
from typing import Any

from pycocotools.coco import COCO

from .errors import DatasetError

logger = logging.getLogger(__name__)

# Larger sides are certainly a corrupt field (no decoder handles them anyway).
MAX_IMAGE_SIDE = 100_000
_MAX_ID = 2**63 - 1  # ids must fit int64 tensors and pycocotools' arrays
_MISSING = object()


def load_coco_json(json_file: str | os.PathLike, image_root: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Records of every image in ``json_file`` and its categories.

    Returns:
        (records, categories): records in the order of the file's "images" (format in
        the module docstring); categories as [{"id": dataset id, "name": str}] sorted by
        id, so a record's category_id ``c`` is ``categories[c]``.

    Raises:
        DatasetError: the file is missing, malformed or inconsistent (see module docstring).
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file}: the top level must be a JSON object, got {_describe(data)}")
    categories = _check_categories(json_file, _top_list(json_file, data, "categories", required=True))
    images = _check_images(json_file, _top_list(json_file, data, "images", required=True))
    annotations = _check_annotations(json_file, _top_list(json_file, data, "annotations", required=False),
                                     image_ids={image["id"] for image in images},
                                     category_ids={category["id"] for category in categories})

    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()

    contiguous = {category["id"]: index for index, category in enumerate(categories)}
    records, dropped, clipped = [], 0, 0
    for image_id, image in coco.imgs.items():
        objects = []
        for annotation in coco.imgToAnns[image_id]:
            box, was_clipped = _clip_xywh(annotation["bbox"], image["width"], image["height"])
            if box is None:
                dropped += 1
                continue
            clipped += was_clipped
            objects.append({"bbox": box, "category_id": contiguous[annotation["category_id"]],
                            "iscrowd": annotation["iscrowd"]})
        records.append({"file_name": os.path.join(image_root, image["file_name"]), "height": image["height"],
                        "width": image["width"], "image_id": image_id, "annotations": objects})
    if dropped:
        logger.warning("%s: dropped %d of %d boxes with zero or negative width or height (after clipping to "
                       "their image); clipped %d boxes partly outside their image",
                       json_file, dropped, len(annotations), clipped)
    elif clipped:
        logger.info("%s: clipped %d boxes partly outside their image", json_file, clipped)
    return records, categories


def _read_json(json_file: str) -> Any:
    try:
        with open(json_file, "rb") as f:
            content = f.read()
    except FileNotFoundError:
        raise DatasetError(f"annotation file {json_file} does not exist") from None
    except OSError as e:
        raise DatasetError(f"cannot read annotation file {json_file}: {e}") from e
    try:
        return json.loads(content)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{json_file}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{json_file}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer literal of more than 4300 digits
        raise DatasetError(f"{json_file}: cannot parse JSON: {e}") from None


def _top_list(json_file: str, data: dict, key: str, required: bool) -> list:
    if key not in data:
        if required:
            raise DatasetError(f"{json_file}: no top-level {key!r} list")
        return []
    if not isinstance(data[key], list):
        raise DatasetError(f"{json_file}: top-level {key!r} must be a list, got {_describe(data[key])}")
    return data[key]


def _check_categories(json_file: str, entries: list) -> list[dict]:
    categories: dict[int, dict] = {}
    for position, entry in enumerate(entries):
        where = f"{json_file}: category #{position}"
        _require_object(entry, where)
        category_id = _integer(entry, "id", where, 0, _MAX_ID)
        where = f"{json_file}: category id {category_id}"
        name = entry.get("name", _MISSING)
        if name is _MISSING:
            raise DatasetError(f"{where}: missing field 'name'")
        if not isinstance(name, str):
            raise DatasetError(f"{where}: field 'name' must be a string, got {_describe(name)}")
        if category_id in categories:
            raise DatasetError(f"{where}: declared twice")
        categories[category_id] = {"id": category_id, "name": name}
    return [categories[category_id] for category_id in sorted(categories)]


def _check_images(json_file: str, entries: list) -> list[dict]:
    images, seen = [], set()
    for position, entry in enumerate(entries):
        where = f"{json_file}: image #{position}"
        _require_object(entry, where)
        image_id = _integer(entry, "id", where, 0, _MAX_ID)
        where = f"{json_file}: image id {image_id}"
        if image_id in seen:
            raise DatasetError(f"{where}: the id is used by another image too")
        seen.add(image_id)
        file_name = entry.get("file_name", _MISSING)
        if file_name is _MISSING:
            raise DatasetError(f"{where}: missing field 'file_name'")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{where}: field 'file_name' must be a non-empty string, got {_describe(file_name)}")
        images.append({"id": image_id, "file_name": file_name,
                       "height": _integer(entry, "height", where, 1, MAX_IMAGE_SIDE),
                       "width": _integer(entry, "width", where, 1, MAX_IMAGE_SIDE)})
    return images


def _check_annotations(json_file: str, entries: list, image_ids: set[int], category_ids: set[int]) -> list[dict]:
    annotations, seen = [], set()
    for position, entry in enumerate(entries):
        where = f"{json_file}: annotation #{position}"
        _require_object(entry, where)
        annotation_id = _integer(entry, "id", where, 0, _MAX_ID)
        where = f"{json_file}: annotation id {annotation_id}"
        if annotation_id in seen:
            raise DatasetError(f"{where}: the id is used by another annotation too")
        seen.add(annotation_id)
        image_id = _integer(entry, "image_id", where, 0, _MAX_ID)
        if image_id not in image_ids:
            raise DatasetError(f"{where}: field 'image_id' is {image_id}, which no image has")
        category_id = _integer(entry, "category_id", where, 0, _MAX_ID)
        if category_id not in category_ids:
            raise DatasetError(f"{json_file}: category id {category_id} is used by annotation id {annotation_id} "
                               f"but not declared in 'categories' (declared: {sorted(category_ids)})")
        iscrowd = entry.get("iscrowd", 0)
        if not (isinstance(iscrowd, (int, float)) and iscrowd in (0, 1)):  # True/False count as 1/0
            raise DatasetError(f"{where}: field 'iscrowd' must be 0 or 1, got {_describe(iscrowd)}")
        annotations.append({"id": annotation_id, "image_id": image_id, "category_id": category_id,
                            "bbox": _bbox(entry, where), "iscrowd": int(iscrowd)})
    return annotations


def _require_object(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: must be a JSON object, got {_describe(entry)}")


def _integer(entry: dict, key: str, where: str, minimum: int, maximum: int) -> int:
    """An integer field; integral floats such as 640.0 (written by some tools) are accepted."""
    value = entry.get(key, _MISSING)
    if value is _MISSING:
        raise DatasetError(f"{where}: missing field {key!r}")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"{where}: field {key!r} must be an integer, got {_describe(value)}")
    if not minimum <= value <= maximum:
        raise DatasetError(f"{where}: field {key!r} must be in [{minimum}, {maximum}], got {value}")
    return value


def _bbox(entry: dict, where: str) -> list[float]:
    value = entry.get("bbox", _MISSING)
    if value is _MISSING:
        raise DatasetError(f"{where}: missing field 'bbox'")
    numbers_ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers_ok:
        raise DatasetError(f"{where}: field 'bbox' must be a list of 4 numbers [x, y, width, height], "
                           f"got {_describe(value)}")
    try:
        x, y, w, h = (float(v) for v in value)
    except OverflowError:  # an integer beyond float range
        raise DatasetError(f"{where}: field 'bbox' has a value out of range: {_describe(value)}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h, x + w, y + h)):
        raise DatasetError(f"{where}: field 'bbox' must hold finite numbers, got {_describe(value)}")
    return [x, y, w, h]


def _clip_xywh(bbox: list[float], width: int, height: int) -> tuple[list[float] | None, bool]:
    """([x0, y0, x1, y1] clipped to the image or None when empty, whether clipping changed it)."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None, False
    x0, y0, x1, y1 = x, y, x + w, y + h
    clipped = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width),
               min(max(y1, 0.0), height)]
    was_clipped = clipped != [x0, y0, x1, y1]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, was_clipped
    return clipped, was_clipped


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
