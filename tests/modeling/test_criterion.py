"""SetCriterion: each term against direct formulas, weights, key sets, empty images, normalisation."""
import math

import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling import criterion as criterion_module
from ddetr_plugin.modeling.criterion import SetCriterion
from ddetr_plugin.modeling.matcher import HungarianMatcher
from ddetr_plugin.registry import CRITERION_REGISTRY, build


def _problem(seed, batch_sizes, num_queries=4, num_classes=3, num_aux=0, enc_classes=None):
    generator = torch.Generator().manual_seed(seed)
    batch = len(batch_sizes)

    def layer(classes, queries=num_queries):
        return {
            "pred_logits": torch.randn(batch, queries, classes, generator=generator, dtype=torch.float64),
            "pred_boxes": torch.rand(batch, queries, 4, generator=generator, dtype=torch.float64) * 0.4 + 0.2,
        }

    outputs = layer(num_classes)
    outputs["aux_outputs"] = [layer(num_classes) for _ in range(num_aux)]
    outputs["enc_outputs"] = None if enc_classes is None else layer(enc_classes, queries=6)
    targets = [
        {
            "labels": torch.randint(num_classes, (k,), generator=generator),
            "boxes": torch.rand(k, 4, generator=generator, dtype=torch.float64) * 0.4 + 0.2,
        }
        for k in batch_sizes
    ]
    return outputs, targets


def _focal_loop(logits, positives, num_boxes, alpha=0.25, gamma=2.0):
    """Sum over (b, q, c) of the sigmoid focal loss, / num_boxes; positives: set of (b, q, c)."""
    total = 0.0
    batch, queries, classes = logits.shape
    for b in range(batch):
        for q in range(queries):
            for c in range(classes):
                p = 1 / (1 + math.exp(-float(logits[b, q, c])))
                if (b, q, c) in positives:
                    total += alpha * (1 - p) ** gamma * -math.log(p)
                else:
                    total += (1 - alpha) * p**gamma * -math.log(1 - p)
    return total / num_boxes


def test_focal_term_matches_direct_formula():
    outputs, targets = _problem(0, [2, 3], num_queries=5, num_classes=4)
    criterion = SetCriterion(4, HungarianMatcher())
    indices = criterion.matcher(outputs, targets)
    positives = {
        (b, q, int(targets[b]["labels"][k]))
        for b, (pred_idx, tgt_idx) in enumerate(indices)
        for q, k in zip(pred_idx.tolist(), tgt_idx.tolist())
    }
    assert len(positives) == 5
    loss = criterion.unweighted(outputs, targets)["loss_ce"]
    assert float(loss) == pytest.approx(_focal_loop(outputs["pred_logits"], positives, num_boxes=5), rel=1e-12)


def test_box_terms_match_hand_values():
    # pred xyxy [0, 0, .5, .5], target [.25, 0, .75, .5]: L1 = .25, GIoU = .125 / .375 = 1/3
    outputs = {"pred_logits": torch.zeros(1, 1, 2), "pred_boxes": torch.tensor([[[0.25, 0.25, 0.5, 0.5]]])}
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.25, 0.5, 0.5]])}]
    criterion = SetCriterion(2, HungarianMatcher())
    raw = criterion.unweighted(outputs, targets)
    assert float(raw["loss_bbox"]) == pytest.approx(0.25)
    assert float(raw["loss_giou"]) == pytest.approx(2 / 3)
    # p = 0.5 everywhere: class 1 positive, class 0 negative
    assert float(raw["loss_ce"]) == pytest.approx((0.25 + 0.75) * 0.25 * math.log(2))

    # two images, two targets: sums over pairs divided by num_boxes = 2
    outputs2 = {k: torch.cat([v, v]) for k, v in outputs.items()}
    outputs2["pred_boxes"][1, 0] = torch.tensor([0.75, 0.75, 0.5, 0.5])  # xyxy [.5, .5, 1, 1]: L1 .75, GIoU -1/3
    raw2 = criterion.unweighted(outputs2, targets * 2)
    assert float(raw2["loss_bbox"]) == pytest.approx((0.25 + 0.75) / 2)
    assert float(raw2["loss_giou"]) == pytest.approx((2 / 3 + 4 / 3) / 2)


def test_weights_are_applied_per_term():
    outputs, targets = _problem(1, [2, 1], num_aux=2, enc_classes=1)
    criterion = SetCriterion(3, HungarianMatcher(), loss_class_weight=3.0, loss_bbox_weight=7.0, loss_giou_weight=11.0)
    raw = criterion.unweighted(outputs, targets)
    weighted = criterion(outputs, targets)
    assert weighted.keys() == raw.keys()
    for key, value in raw.items():
        factor = {"loss_ce": 3.0, "loss_bbox": 7.0, "loss_giou": 11.0}["_".join(key.split("_")[:2])]
        torch.testing.assert_close(weighted[key], factor * value)
    with pytest.raises(KeyError, match="no weight for loss 'loss_mask'"):
        criterion.apply_weights({"loss_mask": torch.tensor(1.0)})


def test_key_sets_for_aux_and_encoder_outputs():
    terms = ["loss_ce", "loss_bbox", "loss_giou"]
    outputs, targets = _problem(2, [2, 1], num_aux=2, enc_classes=3)
    keys = set(SetCriterion(3, HungarianMatcher())(outputs, targets))
    assert keys == {t + s for t in terms for s in ["", "_0", "_1", "_enc"]}
    assert set(SetCriterion(3, HungarianMatcher(), enc_loss=False)(outputs, targets)) == {
        t + s for t in terms for s in ["", "_0", "_1"]
    }
    del outputs["aux_outputs"], outputs["enc_outputs"]
    assert set(SetCriterion(3, HungarianMatcher())(outputs, targets)) == set(terms)


def test_aux_terms_equal_the_main_terms_of_that_layer():
    outputs, targets = _problem(3, [2, 2], num_aux=1)
    criterion = SetCriterion(3, HungarianMatcher())
    raw = criterion.unweighted(outputs, targets)
    alone = criterion.unweighted(outputs["aux_outputs"][0], targets)
    for term in ["loss_ce", "loss_bbox", "loss_giou"]:
        torch.testing.assert_close(raw[term + "_0"], alone[term])


@pytest.mark.parametrize("enc_classes", [1, 3])
def test_encoder_terms_use_class_zero_for_every_target(enc_classes):
    outputs, targets = _problem(4, [2, 3], num_classes=3, enc_classes=enc_classes)
    raw = SetCriterion(3, HungarianMatcher()).unweighted(outputs, targets)
    agnostic = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
    # an independent criterion whose decoder classifier has the encoder's width
    expected = SetCriterion(enc_classes, HungarianMatcher()).unweighted(outputs["enc_outputs"], agnostic)
    for term in ["loss_ce", "loss_bbox", "loss_giou"]:
        torch.testing.assert_close(raw[term + "_enc"], expected[term])
    if enc_classes == 3:  # the relabelling matters: with the true labels the loss differs
        relabelled = SetCriterion(3, HungarianMatcher()).unweighted(outputs["enc_outputs"], targets)
        assert not torch.allclose(relabelled["loss_ce"], expected["loss_ce"])


def test_images_without_targets_give_finite_losses_with_gradients():
    outputs, _ = _problem(5, [0, 0], num_aux=1)
    leaves = [outputs["pred_logits"], outputs["pred_boxes"]]
    for leaf in leaves:
        leaf.requires_grad_(True)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    losses = SetCriterion(3, HungarianMatcher())(outputs, empty)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    # num_boxes clamps to 1: every (query, class) is a negative
    expected = 2 * _focal_loop(outputs["pred_logits"].detach(), set(), num_boxes=1)
    assert losses["loss_ce"].item() == pytest.approx(expected, rel=1e-12)
    sum(losses.values()).backward()
    assert torch.all(outputs["pred_logits"].grad > 0)  # every score is pushed down
    assert outputs["pred_boxes"].grad is not None and torch.all(outputs["pred_boxes"].grad == 0)


def test_mixed_batch_with_an_empty_image_backpropagates():
    outputs, targets = _problem(6, [3, 0])
    outputs["pred_boxes"].requires_grad_(True)
    losses = SetCriterion(3, HungarianMatcher())(outputs, targets)
    (losses["loss_bbox"] + losses["loss_giou"]).backward()
    grad = outputs["pred_boxes"].grad
    assert torch.all(grad[1] == 0) and grad[0].abs().sum() > 0


def test_doubling_the_batch_with_a_copy_keeps_the_losses():
    outputs, targets = _problem(7, [2, 3], num_aux=1, enc_classes=1)
    criterion = SetCriterion(3, HungarianMatcher())
    single = criterion(outputs, targets)

    def double(layer):
        return {k: torch.cat([v, v]) for k, v in layer.items()}

    doubled = double({k: outputs[k] for k in ("pred_logits", "pred_boxes")})
    doubled["aux_outputs"] = [double(a) for a in outputs["aux_outputs"]]
    doubled["enc_outputs"] = double(outputs["enc_outputs"])
    twice = criterion(doubled, targets + targets)
    assert twice.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(twice[key], single[key])


def test_num_boxes_is_averaged_over_processes(monkeypatch):
    # simulate 2 processes where the other one holds 5 boxes: num_boxes = (3 + 5) / 2 = 4
    monkeypatch.setattr(criterion_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(criterion_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(criterion_module.dist, "all_reduce", lambda tensor: tensor.add_(5))
    outputs, targets = _problem(8, [1, 2])
    distributed = SetCriterion(3, HungarianMatcher()).unweighted(outputs, targets)
    monkeypatch.setattr(criterion_module.dist, "is_initialized", lambda: False)
    local = SetCriterion(3, HungarianMatcher()).unweighted(outputs, targets)
    for key in local:
        torch.testing.assert_close(distributed[key] * 4, local[key] * 3)


def test_wrong_number_of_classes_raises():
    outputs, targets = _problem(9, [1], num_classes=3, num_aux=1)
    outputs["aux_outputs"][0]["pred_logits"] = outputs["aux_outputs"][0]["pred_logits"][..., :2]
    with pytest.raises(ValueError, match=r"aux_outputs\[0\]\['pred_logits'\] has 2 classes, expected num_classes=3"):
        SetCriterion(3, HungarianMatcher())(outputs, targets)


def test_built_from_config_with_its_matcher():
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = 5
    cfg.MODEL.CRITERION.LOSS_CLASS_WEIGHT = 1.0
    cfg.MODEL.CRITERION.ENC_LOSS = False
    cfg.MODEL.MATCHER.COST_BBOX = 3.0
    criterion = build(CRITERION_REGISTRY, cfg.MODEL.CRITERION.NAME, cfg)
    assert isinstance(criterion.matcher, HungarianMatcher) and criterion.matcher.cost_bbox == 3.0
    assert criterion.num_classes == 5 and criterion.enc_loss is False
    assert criterion.weights == {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    given = HungarianMatcher(cost_class=1.0)
    assert build(CRITERION_REGISTRY, "SetCriterion", cfg, matcher=given).matcher is given
