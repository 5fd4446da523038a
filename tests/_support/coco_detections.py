"""A hand-made COCO ground truth and detections against it, shared by the evaluation tests.

Categories have non-contiguous ids (1, 3, 7); boxes cover the small (< 32^2), medium and large (> 96^2)
area ranges; one crowd box; one image without annotations. Detections mix perfect boxes, shifted boxes,
duplicates, wrong classes and false positives.
"""
import contextlib
import io
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"}, {"id": 7, "name": "triangle"}]
IMAGE_IDS = [1, 2, 5, 9]
# The evaluator's default mapping: label i is the i-th category in increasing id order.
CATEGORY_TO_LABEL = {1: 0, 3: 1, 7: 2}

# (image_id, category_id, [x, y, w, h], iscrowd)
_ANNOTATIONS = [
    (1, 1, [10, 10, 100, 100], 0),   # large
    (1, 3, [150, 20, 20, 20], 0),    # small
    (1, 7, [120, 120, 40, 40], 0),   # medium
    (2, 7, [30, 40, 40, 40], 0),     # medium
    (2, 1, [100, 100, 98, 98], 1),   # crowd, large
    (2, 3, [5, 150, 50, 30], 0),     # medium
    (5, 7, [60, 60, 16, 16], 0),     # small
    (5, 1, [20, 120, 45, 45], 0),    # medium
    (5, 3, [90, 0, 110, 100], 0),    # large
    (5, 3, [10, 10, 24, 24], 0),     # small
]

# (image_id, category_id, [x, y, w, h], score), in dataset ids, as a user would write COCO results.
DETECTIONS = [
    (1, 1, [10, 10, 100, 100], 0.95),    # perfect
    (1, 1, [12, 8, 100, 100], 0.40),     # duplicate of the same object
    (1, 3, [154, 24, 20, 20], 0.70),     # shifted small box: IoU 0.47
    (1, 7, [125, 120, 40, 40], 0.80),    # shifted medium box: IoU 0.78
    (1, 3, [0, 150, 30, 30], 0.30),      # false positive
    (2, 7, [30, 40, 40, 40], 0.90),      # perfect
    (2, 1, [110, 110, 50, 50], 0.85),    # inside the crowd region: ignored
    (2, 1, [30, 40, 40, 40], 0.60),      # right place, wrong class
    (2, 3, [5, 152, 50, 30], 0.65),      # shifted: IoU 0.875
    (5, 7, [60, 60, 16, 16], 0.99),      # perfect small
    (5, 1, [25, 125, 45, 45], 0.50),     # shifted medium: IoU 0.65
    (5, 3, [90, 0, 110, 100], 0.88),     # perfect large
    (5, 3, [12, 12, 24, 24], 0.20),      # shifted small: IoU 0.725
    (9, 7, [50, 50, 60, 60], 0.45),      # image without objects: false positive
]


def write_ground_truth(path: Path) -> Path:
    """The hand-made ground truth as a COCO JSON file at ``path``."""
    images = [{"id": i, "file_name": f"{i:06d}.png", "height": 200, "width": 200} for i in IMAGE_IDS]
    annotations = [
        {"id": n + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
         "iscrowd": crowd}
        for n, (img, cat, box, crowd) in enumerate(_ANNOTATIONS)
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


@pytest.fixture
def gt_path(tmp_path) -> Path:
    """The hand-made ground truth written as a COCO JSON file."""
    return write_ground_truth(tmp_path / "gt.json")


def coco_results(detections=DETECTIONS) -> List[Dict]:
    """The detections in COCO results format."""
    return [{"image_id": img, "category_id": cat, "bbox": list(box), "score": score}
            for img, cat, box, score in detections]


def model_outputs(category_to_label: Dict[int, int], image_ids=IMAGE_IDS, detections=DETECTIONS):
    """(inputs, outputs) as a model would give them: xyxy boxes and contiguous labels, one dict per image."""
    inputs, outputs = [], []
    for image_id in image_ids:
        mine = [d for d in detections if d[0] == image_id]
        boxes = [[x, y, x + w, y + h] for _, _, (x, y, w, h), _ in mine]
        inputs.append({"image_id": image_id})
        outputs.append({
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([d[3] for d in mine], dtype=torch.float32),
            "labels": torch.tensor([category_to_label[d[1]] for d in mine], dtype=torch.int64),
        })
    return inputs, outputs


def direct_stats(gt_path, results, category_ids=None) -> np.ndarray:
    """COCOeval.stats * 100 computed straight from pycocotools, the reference."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        coco_eval = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iouType="bbox")
        if category_ids is not None:
            coco_eval.params.catIds = category_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats * 100
