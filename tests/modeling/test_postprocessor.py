"""DetectionPostProcessor: top-k over queries x classes, labels, box scaling, K, optional class-wise NMS."""
import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.postprocessor import DetectionPostProcessor
from ddetr_plugin.registry import POSTPROCESSOR_REGISTRY, build


def test_top_k_order_and_labels():
    # 3 queries x 4 classes; the flat index q * 4 + c of each logit is its rank from the top
    logits = torch.full((1, 3, 4), -10.0)
    ranked = [(2, 1), (0, 3), (1, 0), (2, 2)]  # (query, class), best first
    for rank, (q, c) in enumerate(ranked):
        logits[0, q, c] = 5.0 - rank
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2]]])
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    result, = DetectionPostProcessor(num_detections=4)(outputs, torch.tensor([[1, 1]]))
    assert result["labels"].tolist() == [c for _, c in ranked]
    assert result["labels"].dtype == torch.int64
    torch.testing.assert_close(result["scores"], torch.sigmoid(torch.tensor([5.0, 4.0, 3.0, 2.0])))
    centers = torch.stack([boxes[0, q, :2] for q, _ in ranked])
    half_sizes = torch.stack([boxes[0, q, 2:] / 2 for q, _ in ranked])
    torch.testing.assert_close(result["boxes"], torch.cat([centers - half_sizes, centers + half_sizes], 1))


def test_scores_are_sorted_and_are_the_largest_sigmoids():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 5, generator=generator)
    outputs = {"pred_logits": logits, "pred_boxes": torch.rand(2, 7, 4, generator=generator)}
    results = DetectionPostProcessor(num_detections=10)(outputs, torch.tensor([[10, 20], [30, 40]]))
    for b, result in enumerate(results):
        scores = result["scores"]
        assert torch.all(scores[:-1] >= scores[1:])
        torch.testing.assert_close(scores, logits[b].sigmoid().flatten().sort(descending=True).values[:10])
        # label = flat index mod C: the score sits at (query, label) for some query
        for score, label in zip(scores.tolist(), result["labels"].tolist()):
            assert torch.isclose(logits[b, :, label].sigmoid(), torch.tensor(score)).any()


def test_box_scaling_by_width_and_height_without_clamping():
    # cxcywh (.5, .5, .2, .4) -> xyxy (.4, .3, .6, .7); image h=100, w=200 -> (80, 30, 120, 70)
    # cxcywh (.95, .5, .2, .2) -> x1 = 1.05 * 200 = 210 stays outside the image (no clamping)
    outputs = {
        "pred_logits": torch.tensor([[[3.0], [1.0]]]),
        "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.95, 0.5, 0.2, 0.2]]]),
    }
    result, = DetectionPostProcessor()(outputs, torch.tensor([[100, 200]]))
    torch.testing.assert_close(result["boxes"], torch.tensor([[80.0, 30.0, 120.0, 70.0], [170.0, 40.0, 210.0, 60.0]]))


@pytest.mark.parametrize("num_detections, expected", [(100, 6), (4, 4), (6, 6)])
def test_number_of_detections_is_min_of_limit_and_queries_times_classes(num_detections, expected):
    outputs = {"pred_logits": torch.randn(2, 2, 3), "pred_boxes": torch.rand(2, 2, 4)}
    results = DetectionPostProcessor(num_detections)(outputs, [[8, 8], [16, 16]])
    assert len(results) == 2
    for result in results:
        assert result["scores"].shape == (expected,) and result["labels"].shape == (expected,)
        assert result["boxes"].shape == (expected, 4)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num_detections must be >= 1, got 0"):
        DetectionPostProcessor(0)
    with pytest.raises(ValueError, match=r"nms_threshold \(TEST.NMS_THRESH\) must be in \[0, 1\].*got 1.5"):
        DetectionPostProcessor(nms_threshold=1.5)
    outputs = {"pred_logits": torch.randn(2, 2, 3), "pred_boxes": torch.rand(2, 2, 4)}
    with pytest.raises(ValueError, match=r"target_sizes must have shape \(2, 2\).*got \(1, 2\)"):
        DetectionPostProcessor()(outputs, torch.tensor([[8, 8]]))


def _duplicates():
    """Queries 0 and 1 on one object (IoU 0.82), query 2 overlapping query 0 by IoU 1/3; one class."""
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.52, 0.5, 0.4, 0.36], [0.7, 0.5, 0.4, 0.4]]])
    logits = torch.tensor([[[3.0, -9.0], [2.0, -9.0], [1.0, -9.0]]])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_no_nms_by_default_keeps_duplicates_like_the_official():
    result, = DetectionPostProcessor(num_detections=3)(_duplicates(), [[100, 100]])
    torch.testing.assert_close(result["scores"], torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))


@pytest.mark.parametrize("threshold, kept_logits", [(0.7, [3.0, 1.0]), (0.9, [3.0, 2.0, 1.0]), (0.1, [3.0])])
def test_nms_drops_same_label_detections_above_the_threshold(threshold, kept_logits):
    result, = DetectionPostProcessor(num_detections=3, nms_threshold=threshold)(_duplicates(), [[100, 100]])
    torch.testing.assert_close(result["scores"], torch.sigmoid(torch.tensor(kept_logits)))
    assert result["boxes"].shape == (len(kept_logits), 4) and result["labels"].tolist() == [0] * len(kept_logits)


def test_nms_keeps_overlapping_detections_of_other_labels():
    outputs = _duplicates()
    outputs["pred_logits"][0, 1] = torch.tensor([-9.0, 2.0])  # the duplicate box is now another class
    result, = DetectionPostProcessor(num_detections=3, nms_threshold=0.5)(outputs, [[100, 100]])
    assert result["labels"].tolist() == [0, 1, 0]


def test_built_from_config():
    cfg = get_cfg()
    cfg.TEST.DETECTIONS_PER_IMAGE = 17
    cfg.TEST.NMS_THRESH = 0.7
    postprocessor = build(POSTPROCESSOR_REGISTRY, cfg.MODEL.POSTPROCESSOR.NAME, cfg)
    assert isinstance(postprocessor, DetectionPostProcessor) and postprocessor.num_detections == 17
    assert postprocessor.nms_threshold == 0.7
