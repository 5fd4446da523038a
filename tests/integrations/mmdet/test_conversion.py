"""tools/convert_checkpoint.py --from mmdet / --to mmdet on mmdet's own DeformableDETR (all three variants)."""
import copy

import pytest
import torch

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmengine.runner import load_checkpoint, save_checkpoint  # noqa: E402

from ddetr_plugin.checkpoint import Checkpointer  # noqa: E402
from ddetr_plugin.config import load_config  # noqa: E402
from ddetr_plugin.integrations.mmdet.detector import padding_mask  # noqa: E402
from ddetr_plugin.modeling import build_model  # noqa: E402
from tests._support.mmdet_models import VARIANTS, mmdet_model, packaged_config, padded_batch  # noqa: E402
from tests._support.tool_scripts import load_tool  # noqa: E402

TOLERANCE = 2e-4


def clipped(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                        boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)


@pytest.fixture(params=list(VARIANTS))
def converted(request, tmp_path):
    """(mmdet model, its checkpoint path, our model converted with --from mmdet, our YAML)."""
    cfg = packaged_config(request.param)
    reference = mmdet_model(cfg)
    source = tmp_path / "mmdet.pth"
    # as mmengine's Runner saves: the weights and the run's config text
    save_checkpoint({"meta": {"cfg": cfg.pretty_text, "epoch": 50}, "state_dict": reference.state_dict()}, str(source))
    tool = load_tool("convert_checkpoint")
    yaml = tmp_path / "ours.yaml"
    assert tool.main(["--from", "mmdet", "--input", str(source), "--output", str(tmp_path / "ours.pth"),
                      "--config-out", str(yaml)]) == 0
    ours_cfg = load_config(str(yaml))
    ours = build_model(ours_cfg)
    Checkpointer(ours).load(ours_cfg.MODEL.WEIGHTS)
    return request.param, reference, source, ours.eval(), yaml


def test_from_mmdet_predicts_as_mmdet(converted):
    variant, reference, _, ours, _ = converted
    assert ours.with_box_refine == (variant != "plain") and ours.two_stage == (variant == "two_stage")
    inputs, samples = padded_batch(reference)
    assert padding_mask(inputs, samples).any(dim=(1, 2)).all()  # both images padded
    with torch.no_grad():
        expected_logits, expected_boxes = reference._forward(inputs, samples)
        outputs = ours.forward_raw(inputs, padding_mask(inputs, samples))
        expected = reference.predict(inputs, copy.deepcopy(samples), rescale=False)
        sizes = torch.tensor([sample.img_shape for sample in samples], dtype=torch.float32)
        detections = ours.postprocessor(outputs, sizes)
    layers = outputs["aux_outputs"] + [outputs]
    assert len(layers) == expected_logits.shape[0] == 2
    for index, layer in enumerate(layers):
        assert (layer["pred_logits"] - expected_logits[index]).abs().max() < TOLERANCE
        assert (layer["pred_boxes"] - expected_boxes[index]).abs().max() < TOLERANCE
    for sample, detection, mmdet_result in zip(samples, detections, expected):
        mmdet_result = mmdet_result.pred_instances
        assert torch.equal(detection["labels"], mmdet_result.labels)
        assert torch.allclose(detection["scores"], mmdet_result.scores, atol=1e-5)
        assert torch.allclose(clipped(detection["boxes"], *sample.img_shape), mmdet_result.bboxes, atol=1e-2)


def test_round_trip_is_exact_and_loads_into_mmdet(converted, tmp_path):
    variant, reference, _, _, yaml = converted
    back = tmp_path / "back.pth"
    assert load_tool("convert_checkpoint").main(["--to", "mmdet", "--config", str(yaml), "--output", str(back)]) == 0
    state_dict = torch.load(back, weights_only=True)["state_dict"]
    original = reference.state_dict()
    # our frozen batch norm keeps no counters; mmengine's loader ignores their absence
    assert sorted(set(original) - set(state_dict)) == sorted(k for k in original if k.endswith("num_batches_tracked"))
    assert set(state_dict) <= set(original)
    for key, value in state_dict.items():
        assert torch.equal(value, original[key]), key
    # what load_from= does
    fresh = mmdet_model(packaged_config(variant), seed=5)
    load_checkpoint(fresh, str(back), map_location="cpu")
    for key, value in state_dict.items():
        assert torch.equal(fresh.state_dict()[key], value), key
