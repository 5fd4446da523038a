"""The synthetic shapes dataset: deterministic, tight boxes, atomic and concurrent generation, root rule."""
import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from ddetr_plugin.data import DatasetError, ShapesSpec, default_shapes_root, ensure_shapes, generate_shapes
from ddetr_plugin.data import shapes as shapes_module
from ddetr_plugin.data.shapes import OBJECT_COLOURS, SHAPE_CLASSES, render_image

SPEC = ShapesSpec(num_images=12, seed=7)


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path):
    generate_shapes(tmp_path / "a", SPEC)
    generate_shapes(tmp_path / "b", SPEC)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(first) == SPEC.num_images + 1 and first == second  # same JSON and image bytes
    generate_shapes(tmp_path / "c", ShapesSpec(num_images=12, seed=8))
    assert _digests(tmp_path / "c")["instances.json"] != first["instances.json"]


def test_content_matches_the_spec(tmp_path):
    spec = ShapesSpec(num_images=40, seed=11)
    generate_shapes(tmp_path, spec)
    data = json.loads((tmp_path / "instances.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    per_image: dict[int, list] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann["bbox"])
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= 128 and 0 <= y and y + h <= 128
        # unclipped shapes span 12-60 px; a clipped one keeps at least 4/5 of its side
        assert max(w, h) <= 60 and min(w, h) >= 12 * 4 // 5 - 1
    counts = [len(per_image.get(image["id"], [])) for image in data["images"]]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) == 4

    def overlap(a, b):
        return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])

    overlapping = sum(any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
                      for boxes in per_image.values())
    assert overlapping >= 4  # the dataset has overlaps


def test_boxes_are_tight_around_the_drawn_pixels():
    checked = 0
    for index in range(30):
        pixels, objects = render_image(SPEC, index)
        if len(objects) != 1:
            continue
        x0, y0, x1, y1 = objects[0]["box"]
        # the object's colour: the palette colour matched by most pixels (noise is at most 12 per channel)
        matches = [np.all(np.abs(pixels.astype(int) - colour) <= 12, axis=2) for colour in OBJECT_COLOURS]
        mask = max(matches, key=np.count_nonzero)
        rows, cols = np.nonzero(mask)
        assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x0, y0, x1, y1)
        assert np.count_nonzero(mask) == objects[0]["area"]
        checked += 1
    assert checked >= 3


def test_ensure_generates_once_and_reuses(tmp_path):
    split_dir = tmp_path / "root" / "tiny"
    json_file = ensure_shapes(split_dir, SPEC)
    assert json_file == split_dir / "instances.json"
    assert len(list((split_dir / "images").glob("*.png"))) == SPEC.num_images
    stamp = json_file.stat().st_mtime_ns
    assert ensure_shapes(split_dir, SPEC) == json_file and json_file.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in split_dir.parent.iterdir()) == [".tiny.lock", "tiny"]  # no temporary left


def test_ensure_refuses_a_dataset_of_another_spec(tmp_path):
    ensure_shapes(tmp_path / "tiny", SPEC)
    with pytest.raises(DatasetError, match=r"generated with .*'num_images': 12.*delete .*tiny"):
        ensure_shapes(tmp_path / "tiny", ShapesSpec(num_images=13, seed=7))


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    real_generate = shapes_module.generate_shapes

    def interrupted(out_dir, spec):
        real_generate(out_dir, ShapesSpec(num_images=2, seed=spec.seed))
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes_module, "generate_shapes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes(tmp_path / "tiny", SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock"]
    monkeypatch.setattr(shapes_module, "generate_shapes", real_generate)
    (tmp_path / ".tiny.tmp-killed").mkdir()  # what a SIGKILLed generation leaves
    ensure_shapes(tmp_path / "tiny", SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]


def _ensure_in_subprocess(split_dir: str) -> str:
    return str(ensure_shapes(split_dir, SPEC))


def test_concurrent_processes_generate_one_dataset(tmp_path):
    split_dir = str(tmp_path / "tiny")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_ensure_in_subprocess, [split_dir] * 3)
    assert len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]
    reference = tmp_path / "reference"
    generate_shapes(reference, SPEC)
    assert _digests(Path(split_dir)) == _digests(reference)


def test_root_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("DDETR_DATASETS", str(tmp_path / "ds"))
    assert default_shapes_root() == tmp_path / "ds" / "shapes"
    monkeypatch.delenv("DDETR_DATASETS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_shapes_root() == tmp_path / "cache" / "ddetr_plugin" / "shapes"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_shapes_root() == Path.home() / ".cache" / "ddetr_plugin" / "shapes"


@pytest.mark.parametrize("changes, fragment", [({"num_images": 0}, "num_images"),
                                                ({"max_objects": 9}, "max_objects"),
                                                ({"min_object_size": 70}, "min_object_size")])
def test_spec_is_validated(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        ShapesSpec(**({"num_images": 5, "seed": 0} | changes))
