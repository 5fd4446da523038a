"""HungarianMatcher: cost terms against independent formulas, optimality by brute force, edge cases."""
import itertools
import math

import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.matcher import HungarianMatcher
from ddetr_plugin.registry import MATCHER_REGISTRY, build


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _focal_cost(logit: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = _sigmoid(logit)
    pos = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
    neg = (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
    return pos - neg


def _xyxy(box):
    cx, cy, w, h = box
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _giou(a, b) -> float:
    ax0, ay0, ax1, ay1 = _xyxy(a)
    bx0, by0, bx1, by1 = _xyxy(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return inter / union - (hull - union) / hull


def _loop_cost(logits, boxes, labels, tgt_boxes, w_class, w_bbox, w_giou):
    """(Q, K) cost of one image from scalar formulas."""
    return [
        [
            w_class * _focal_cost(logits[q][labels[k]])
            + w_bbox * sum(abs(p - t) for p, t in zip(boxes[q], tgt_boxes[k]))
            + w_giou * -_giou(boxes[q], tgt_boxes[k])
            for k in range(len(labels))
        ]
        for q in range(len(boxes))
    ]


def _random_problem(generator, batch_sizes, num_queries, num_classes):
    batch = len(batch_sizes)
    outputs = {
        "pred_logits": torch.randn(batch, num_queries, num_classes, generator=generator, dtype=torch.float64) * 2,
        "pred_boxes": torch.rand(batch, num_queries, 4, generator=generator, dtype=torch.float64) * 0.5 + 0.1,
    }
    targets = [
        {
            "labels": torch.randint(num_classes, (k,), generator=generator),
            "boxes": torch.rand(k, 4, generator=generator, dtype=torch.float64) * 0.5 + 0.1,
        }
        for k in batch_sizes
    ]
    return outputs, targets


@pytest.mark.parametrize("seed", range(6))
def test_assignment_minimises_total_cost_against_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    num_queries, num_targets = 3 + seed % 2, 2 + seed % 2
    outputs, targets = _random_problem(generator, [num_targets], num_queries, num_classes=3)
    matcher = HungarianMatcher()
    (pred_idx, tgt_idx), = matcher(outputs, targets)

    cost = _loop_cost(
        outputs["pred_logits"][0].tolist(), outputs["pred_boxes"][0].tolist(),
        targets[0]["labels"].tolist(), targets[0]["boxes"].tolist(), 2.0, 5.0, 2.0,
    )
    best = min(
        sum(cost[q][k] for k, q in enumerate(queries))
        for queries in itertools.permutations(range(num_queries), num_targets)
    )
    found = sum(cost[q][k] for q, k in zip(pred_idx.tolist(), tgt_idx.tolist()))
    assert sorted(tgt_idx.tolist()) == list(range(num_targets))
    assert len(set(pred_idx.tolist())) == num_targets
    assert found == pytest.approx(best, abs=1e-9)


def test_cost_terms_match_independent_formulas():
    generator = torch.Generator().manual_seed(0)
    outputs, targets = _random_problem(generator, [2, 3], num_queries=4, num_classes=5)
    for weights in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 5, 2)]:
        cost = HungarianMatcher(*weights).cost_matrix(outputs, targets)
        assert cost.shape == (2, 4, 5)
        start = 0
        for b, target in enumerate(targets):
            k = len(target["labels"])
            expected = _loop_cost(
                outputs["pred_logits"][b].tolist(), outputs["pred_boxes"][b].tolist(),
                target["labels"].tolist(), target["boxes"].tolist(), *weights,
            )
            torch.testing.assert_close(cost[b, :, start:start + k], torch.tensor(expected, dtype=torch.float64))
            start += k


def test_hand_written_cost_matrix_and_assignment():
    # A = [0, 0, .5, .5], B = [.25, 0, .75, .5], C = [.5, .5, 1, 1] in xyxy
    box_a, box_b, box_c = [0.25, 0.25, 0.5, 0.5], [0.5, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]
    outputs = {"pred_logits": torch.zeros(1, 2, 1), "pred_boxes": torch.tensor([[box_a, box_c]])}
    targets = [{"labels": torch.tensor([0, 0]), "boxes": torch.tensor([box_c, box_b])}]
    class_cost = 0.25 * 0.25 * math.log(2) - 0.75 * 0.25 * math.log(2)  # p = 0.5
    # L1: A-C = 1.0, A-B = 0.25, C-C = 0, C-B = 0.75; GIoU: A-C = 0 - (1 - .5) / 1 = -0.5,
    # A-B = .125 / .375 = 1/3, C-C = 1, C-B = 0 - (.75 - .5) / .75 = -1/3
    giou = [[-0.5, 1 / 3], [1.0, -1 / 3]]
    l1 = [[1.0, 0.25], [0.0, 0.75]]
    expected = torch.tensor([[[2 * class_cost + 5 * l1[q][k] - 2 * giou[q][k] for k in range(2)] for q in range(2)]])
    matcher = HungarianMatcher()
    torch.testing.assert_close(matcher.cost_matrix(outputs, targets), expected)
    (pred_idx, tgt_idx), = matcher(outputs, targets)
    assert pred_idx.tolist() == [0, 1] and tgt_idx.tolist() == [1, 0]


def test_batch_with_different_target_counts_matches_each_image_alone():
    generator = torch.Generator().manual_seed(3)
    outputs, targets = _random_problem(generator, [1, 3, 2], num_queries=5, num_classes=4)
    matcher = HungarianMatcher()
    batched = matcher(outputs, targets)
    for b, (pred_idx, tgt_idx) in enumerate(batched):
        alone = matcher({k: v[b:b + 1] for k, v in outputs.items()}, [targets[b]])[0]
        assert pred_idx.tolist() == alone[0].tolist() and tgt_idx.tolist() == alone[1].tolist()
        assert len(pred_idx) == len(targets[b]["labels"])
        assert pred_idx.dtype == tgt_idx.dtype == torch.int64 and pred_idx.device.type == "cpu"
        assert pred_idx.tolist() == sorted(pred_idx.tolist())


def test_images_without_targets_get_empty_indices():
    generator = torch.Generator().manual_seed(1)
    outputs, targets = _random_problem(generator, [2, 0, 3], num_queries=4, num_classes=3)
    indices = HungarianMatcher()(outputs, targets)
    assert [len(p) for p, _ in indices] == [2, 0, 3]
    assert indices[1][0].dtype == indices[1][1].dtype == torch.int64
    empty = HungarianMatcher()(outputs, [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 3)
    assert all(len(p) == 0 and len(t) == 0 for p, t in empty)


def test_more_targets_than_queries_matches_every_query():
    generator = torch.Generator().manual_seed(2)
    outputs, targets = _random_problem(generator, [4], num_queries=2, num_classes=3)
    (pred_idx, tgt_idx), = HungarianMatcher()(outputs, targets)
    assert pred_idx.tolist() == [0, 1] and len(set(tgt_idx.tolist())) == 2


def test_non_finite_cost_raises_a_clear_error():
    generator = torch.Generator().manual_seed(4)
    outputs, targets = _random_problem(generator, [2], num_queries=3, num_classes=3)
    outputs["pred_boxes"][0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"not finite.*pred_boxes'\] contains NaN"):
        HungarianMatcher()(outputs, targets)

    outputs, targets = _random_problem(generator, [2], num_queries=3, num_classes=3)
    outputs["pred_boxes"][0, 0, 2:] = 0  # zero-area prediction against a zero-area target: GIoU is 0/0
    targets[0]["boxes"][1, 2:] = 0
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] has boxes of zero or negative width"):
        HungarianMatcher()(outputs, targets)


def test_out_of_range_label_raises():
    generator = torch.Generator().manual_seed(5)
    outputs, targets = _random_problem(generator, [2], num_queries=3, num_classes=3)
    targets[0]["labels"][1] = 3
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\].*from \d to 3"):
        HungarianMatcher()(outputs, targets)


def test_built_from_config_with_the_criterion_focal_parameters():
    cfg = get_cfg()
    cfg.MODEL.MATCHER.COST_CLASS, cfg.MODEL.CRITERION.FOCAL_ALPHA = 1.0, 0.5
    matcher = build(MATCHER_REGISTRY, cfg.MODEL.MATCHER.NAME, cfg)
    assert isinstance(matcher, HungarianMatcher)
    assert (matcher.cost_class, matcher.cost_bbox, matcher.cost_giou) == (1.0, 5.0, 2.0)
    assert (matcher.focal_alpha, matcher.focal_gamma) == (0.5, 2.0)
