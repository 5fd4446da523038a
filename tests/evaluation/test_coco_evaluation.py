import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ddetr_plugin.evaluation import COCOEvaluator
from ddetr_plugin.evaluation.coco_evaluation import SUMMARY_METRICS

from tests._support.coco_detections import CATEGORIES, CATEGORY_TO_LABEL, IMAGE_IDS, coco_results, direct_stats, model_outputs


def assert_same(value: float, expected: float) -> None:
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected, abs=1e-9), (
        value, expected)


def run_evaluator(evaluator, category_to_label, image_ids=IMAGE_IDS):
    inputs, outputs = model_outputs(category_to_label, image_ids)
    evaluator.reset()
    # Two batches, to exercise accumulation across process() calls.
    evaluator.process(inputs[:2], outputs[:2])
    evaluator.process(inputs[2:], outputs[2:])
    return evaluator.evaluate()


def test_matches_pycocotools_on_every_metric(gt_path):
    results = run_evaluator(COCOEvaluator(str(gt_path), None, None, None, distributed=False), CATEGORY_TO_LABEL)
    expected = direct_stats(gt_path, coco_results())
    # The hand-made pair is not trivial: something is matched and something is missed.
    assert 0 < expected[0] < 100
    assert not np.any(expected[:6] < 0)
    for i, name in enumerate(SUMMARY_METRICS):
        assert_same(results["bbox"][name], expected[i])


def test_per_class_ap_matches_pycocotools_restricted_to_that_class(gt_path):
    # distributed=True (the default) without an initialized process group acts as a single process.
    results = run_evaluator(COCOEvaluator(gt_path), CATEGORY_TO_LABEL)["bbox"]
    per_class = {k: v for k, v in results.items() if k.startswith("AP-")}
    assert sorted(per_class) == ["AP-circle", "AP-square", "AP-triangle"]
    for category in CATEGORIES:
        expected = direct_stats(gt_path, coco_results(), category_ids=[category["id"]])[0]
        assert_same(per_class[f"AP-{category['name']}"], expected)
    # Every category has ground truth, so the summary AP is the mean of the per-class APs.
    assert results["AP"] == pytest.approx(np.mean(list(per_class.values())))


def test_explicit_mapping_translates_labels_to_dataset_ids(gt_path, tmp_path):
    # A permuted mapping: label 0 is category 7, label 1 is category 1, label 2 is category 3.
    mapping = {0: 7, 1: 1, 2: 3}
    names = ["tri", "circ", "sq"]
    evaluator = COCOEvaluator(gt_path, mapping, names, str(tmp_path / "out"), distributed=False)
    results = run_evaluator(evaluator, {v: k for k, v in mapping.items()})["bbox"]

    expected = direct_stats(gt_path, coco_results())
    for i, name in enumerate(SUMMARY_METRICS):
        assert_same(results[name], expected[i])
    assert results["AP-tri"] == pytest.approx(direct_stats(gt_path, coco_results(), category_ids=[7])[0])
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert sorted({r["category_id"] for r in written}) == [1, 3, 7]

    # The same labels read with the default mapping point at the wrong categories and score lower.
    wrong = run_evaluator(COCOEvaluator(gt_path, distributed=False), {v: k for k, v in mapping.items()})["bbox"]
    assert wrong["AP"] < results["AP"]


def test_results_json_content(gt_path, tmp_path):
    out_dir = tmp_path / "inference"
    run_evaluator(COCOEvaluator(gt_path, None, None, str(out_dir), distributed=False), CATEGORY_TO_LABEL)
    written = json.loads((out_dir / "coco_instances_results.json").read_text())
    expected = coco_results()
    assert len(written) == len(expected)
    for got, want in zip(written, expected):
        assert set(got) == {"image_id", "category_id", "bbox", "score"}
        assert got["image_id"] == want["image_id"]
        assert got["category_id"] == want["category_id"]
        assert got["bbox"] == pytest.approx(want["bbox"])  # xyxy input written back as xywh
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
    # Written atomically: only the final file is left behind.
    assert [p.name for p in out_dir.iterdir()] == ["coco_instances_results.json"]


def test_empty_predictions_give_zero_and_warn(gt_path, tmp_path, caplog):
    evaluator = COCOEvaluator(gt_path, None, None, str(tmp_path), distributed=False)
    inputs, outputs = model_outputs(CATEGORY_TO_LABEL, detections=[])
    evaluator.process(inputs, outputs)
    with caplog.at_level(logging.WARNING, logger="ddetr_plugin.evaluation"):
        results = evaluator.evaluate()["bbox"]
    assert all(value == 0.0 for value in results.values()), results
    assert set(SUMMARY_METRICS) <= set(results) and "AP-square" in results
    assert "no detections" in caplog.text
    assert json.loads((tmp_path / "coco_instances_results.json").read_text()) == []

    # No process() call at all is the same.
    evaluator.reset()
    assert evaluator.evaluate()["bbox"] == results


def test_nan_where_pycocotools_has_no_ground_truth(gt_path):
    # Only image 1 and 2's small/medium objects: drop the large ones through an in-memory COCO object.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
    gt.dataset["annotations"] = [a for a in gt.dataset["annotations"] if a["area"] <= 96 ** 2]
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    results = run_evaluator(COCOEvaluator(gt, distributed=False), CATEGORY_TO_LABEL)["bbox"]
    assert math.isnan(results["APl"])
    assert not math.isnan(results["AP"]) and not math.isnan(results["APs"])


def test_logs_summary_and_per_class_tables(gt_path, caplog):
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.evaluation"):
        results = run_evaluator(COCOEvaluator(gt_path, distributed=False), CATEGORY_TO_LABEL)["bbox"]
    text = caplog.text
    assert "| AP " in text and "| AP50 " in text and "| APl " in text
    assert f"{results['AP']:.3f}" in text
    for category in CATEGORIES:
        assert f"| {category['name']} " in text
        assert f"{results['AP-' + category['name']]:.3f}" in text


def test_errors_name_the_problem(gt_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        COCOEvaluator(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"contiguous ids \[3\]"):
        COCOEvaluator(gt_path, {0: 1, 3: 7}, ["a", "b"])
    with pytest.raises(ValueError, match=r"contiguous ids \[2\]"):  # the default mapping has 3 labels
        COCOEvaluator(gt_path, None, ["a", "b"], distributed=False).evaluate()

    evaluator = COCOEvaluator(gt_path, distributed=False)
    evaluator.process([{"image_id": 12345}], [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                                "labels": torch.zeros(0, dtype=torch.int64)}])
    with pytest.raises(ValueError, match="12345"):
        evaluator.evaluate()

    evaluator = COCOEvaluator(gt_path, distributed=False)
    evaluator.process([{"image_id": 1}], [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "scores": torch.tensor([0.5]),
                                           "labels": torch.tensor([3])}])
    with pytest.raises(ValueError, match=r"labels \[3\]"):
        evaluator.evaluate()

    with pytest.raises(ValueError, match=r"category ids \[2\]"):
        COCOEvaluator(gt_path, {0: 2}, distributed=False).evaluate()

    with pytest.raises(KeyError, match="image_id"):
        COCOEvaluator(gt_path).process([{"file_name": "x"}], [{}])


def test_repeated_images_count_once(gt_path):
    # A padding sampler hands some images to the evaluator twice.
    once = run_evaluator(COCOEvaluator(gt_path, distributed=False), CATEGORY_TO_LABEL)
    twice = run_evaluator(COCOEvaluator(gt_path, distributed=False), CATEGORY_TO_LABEL, IMAGE_IDS + IMAGE_IDS[:2])
    assert twice == once
