"""build_evaluator and DatasetsEvaluation read the model's labels in MODEL.LABEL_SPACE."""
import math

import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.data import register_coco_instances, remove_dataset
from ddetr_plugin.engine import DatasetsEvaluation, build_evaluator

from tests._support.coco_detections import CATEGORY_TO_LABEL, coco_results, direct_stats, model_outputs, write_ground_truth

DATASET = "test_engine_evaluation_gt"


@pytest.fixture
def ground_truth(tmp_path):
    """The hand-made ground truth (category ids 1, 3, 7) registered as a dataset; its path."""
    path = write_ground_truth(tmp_path / "gt.json")
    register_coco_instances(DATASET, path, tmp_path)
    yield path
    remove_dataset(DATASET)


def _cfg(label_space: str, num_classes: int):
    cfg = get_cfg()
    cfg.MODEL.LABEL_SPACE, cfg.MODEL.NUM_CLASSES = label_space, num_classes
    cfg.DATASETS.TEST = [DATASET]
    return cfg


def _evaluate(cfg, category_to_label, extra_label=None):
    """Box AP of the shared detections labelled by ``category_to_label``; ``extra_label``: one more detection
    per image with that label, on top of its best box."""
    inputs, outputs = model_outputs(category_to_label)
    if extra_label is not None:
        for output in outputs:
            if len(output["labels"]):
                output["boxes"] = torch.cat([output["boxes"], output["boxes"][:1]])
                output["scores"] = torch.cat([output["scores"], torch.tensor([1.0])])
                output["labels"] = torch.cat([output["labels"], torch.tensor([extra_label])])
    evaluator = build_evaluator(cfg, DATASET, output_dir=None)
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()["bbox"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], abs=1e-9) for k in a)


def test_category_id_space_scores_like_contiguous_on_relabelled_detections(ground_truth):
    contiguous = _evaluate(_cfg("contiguous", 3), CATEGORY_TO_LABEL)
    category_id = _evaluate(_cfg("category_id", 8), {category_id: category_id for category_id in CATEGORY_TO_LABEL})
    assert _same(category_id, contiguous)
    assert contiguous["AP"] == pytest.approx(direct_stats(ground_truth, coco_results())[0])
    assert {"AP-circle", "AP-square", "AP-triangle"} <= set(category_id)
    # contiguous labels read as category ids point at the wrong categories (0 and 2 at none at all)
    assert _evaluate(_cfg("category_id", 8), CATEGORY_TO_LABEL)["AP"] < contiguous["AP"]


def test_labels_of_no_category_are_left_out(ground_truth, caplog):
    identity = {category_id: category_id for category_id in CATEGORY_TO_LABEL}
    expected = _evaluate(_cfg("category_id", 8), identity)
    # label 2 is an id the dataset does not use: a confident detection of it (one per image) must not count
    assert _same(_evaluate(_cfg("category_id", 8), identity, extra_label=2), expected)
    assert "left out 4 detections with labels that stand for no category" in caplog.text


def test_too_few_classes_stop_before_evaluating(ground_truth):
    with pytest.raises(ValueError, match=f"MODEL.NUM_CLASSES is 7, too small for MODEL.LABEL_SPACE 'category_id' "
                                         f"on dataset '{DATASET}': its largest category id is 7"):
        DatasetsEvaluation(_cfg("category_id", 7))
