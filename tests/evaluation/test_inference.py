import logging

import numpy as np
import pytest
import torch
from torch import nn

from ddetr_plugin.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset
from ddetr_plugin.evaluation.coco_evaluation import SUMMARY_METRICS

from tests._support.coco_detections import CATEGORY_TO_LABEL, IMAGE_IDS, coco_results, direct_stats, model_outputs


class ScriptedModel(nn.Module):
    """Returns fixed outputs per image id and records the mode it was called in."""

    def __init__(self, outputs_by_image_id=None):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.outputs_by_image_id = outputs_by_image_id or {}
        self.calls = []

    def forward(self, batched_inputs):
        self.calls.append((self.training, torch.is_grad_enabled()))
        if batched_inputs[0].get("fail"):
            raise RuntimeError("scripted failure")
        return [self.outputs_by_image_id.get(x["image_id"], {}) for x in batched_inputs]


class RecordingEvaluator(DatasetEvaluator):
    def __init__(self):
        self.resets, self.batches = 0, []

    def reset(self):
        self.resets += 1

    def process(self, inputs, outputs):
        self.batches.append([x["image_id"] for x in inputs])

    def evaluate(self):
        return {"bbox": {"AP": float(len(self.batches))}}


def test_end_to_end_matches_pycocotools(gt_path):
    inputs, outputs = model_outputs(CATEGORY_TO_LABEL, IMAGE_IDS)
    model = ScriptedModel({x["image_id"]: out for x, out in zip(inputs, outputs)})
    model.train()
    loader = [inputs[:2], inputs[2:3], inputs[3:]]
    results = inference_on_dataset(model, loader, COCOEvaluator(gt_path, distributed=False))
    expected = direct_stats(gt_path, coco_results())
    assert [results["bbox"][name] for name in SUMMARY_METRICS] == pytest.approx(list(expected[:6]))
    assert model.calls == [(False, False)] * 3  # eval mode, no autograd
    assert model.training  # mode restored


def test_resets_processes_every_batch_and_logs_eta(caplog):
    evaluator = RecordingEvaluator()
    loader = [[{"image_id": 2 * i}, {"image_id": 2 * i + 1}] for i in range(8)]
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.evaluation"):
        results = inference_on_dataset(ScriptedModel(), loader, evaluator, log_period_s=0.0)
    assert results == {"bbox": {"AP": 8.0}}
    assert evaluator.resets == 1
    assert np.concatenate(evaluator.batches).tolist() == list(range(16))
    messages = [r.getMessage() for r in caplog.records]
    # The first 5 batches are warm-up, left out of the rate; every later batch logs with period 0.
    progress = [m for m in messages if m.startswith("Inference done ") and "/8" in m]
    assert [m.split()[2] for m in progress] == ["6/8.", "7/8.", "8/8."]
    assert all("ETA=" in m for m in progress)
    assert any(m.startswith("Inference done on 16 images") for m in messages)


def test_loader_without_length_and_mode_restored_on_error():
    evaluator = RecordingEvaluator()
    inference_on_dataset(ScriptedModel(), (batch for batch in [[{"image_id": 1}]]), evaluator)
    assert evaluator.batches == [[1]]

    model = ScriptedModel()
    model.train()
    with pytest.raises(RuntimeError, match="scripted failure"):
        inference_on_dataset(model, [[{"image_id": 1, "fail": True}]], RecordingEvaluator())
    assert model.training
