"""The detectron2 meta-architecture: same detections as our model on the same weights, detectron2 inputs
and outputs, detectron2 backbones and our registries chosen by name."""
import pytest
import torch

from tests._support.detectron2_models import VARIANTS, perturbed_models  # noqa: I001  (skips without detectron2)

from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, build_model
from detectron2.structures import Boxes, Instances
from torch import nn

from ddetr_plugin.modeling.postprocessor import DetectionPostProcessor
from ddetr_plugin.registry import POSTPROCESSOR_REGISTRY


def _images():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8, generator=generator),
            torch.randint(0, 256, (3, 96, 64), dtype=torch.uint8, generator=generator)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_detections_as_ours_on_a_padded_batch(variant):
    ours, theirs, _ = perturbed_models(variant)
    images = _images()
    # the second image is shown at another original size, so both rescale their boxes
    inputs = [{"image": images[0]}, {"image": images[1], "height": 192, "width": 128}]
    with torch.no_grad():
        expected = ours(inputs)
        results = theirs(inputs)
    for mine, result, size in zip(expected, results, [(70, 90), (192, 128)]):
        instances = result["instances"]
        assert instances.image_size == size and len(instances) == len(mine["boxes"]) == 40
        torch.testing.assert_close(instances.pred_boxes.tensor, mine["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(instances.scores, mine["scores"], atol=1e-5, rtol=0)
        assert torch.equal(instances.pred_classes, mine["labels"])


def test_raw_outputs_equal_ours_and_padding_mask_from_image_sizes():
    ours, theirs, _ = perturbed_models("two_stage")
    inputs = [{"image": image} for image in _images()]
    with torch.no_grad():
        images, mask, sizes = theirs.preprocess_images(inputs)
        reference_images, reference_mask, reference_sizes = ours.preprocess_images(inputs)
        assert torch.equal(mask, reference_mask) and sizes == reference_sizes
        torch.testing.assert_close(images, reference_images, atol=0, rtol=0)
        a, b = ours.forward_raw(images, mask), theirs.forward_raw(images, mask)
    torch.testing.assert_close(b["pred_logits"], a["pred_logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(b["pred_boxes"], a["pred_boxes"], atol=1e-6, rtol=0)


def test_training_loss_equals_ours_from_instances():
    ours, theirs, _ = perturbed_models("box_refine")
    ours.train(), theirs.train()
    images = _images()
    boxes = [torch.tensor([[5.0, 6.0, 40.0, 50.0]]), torch.tensor([[10.0, 10.0, 60.0, 90.0], [0.0, 0.0, 20, 20]])]
    labels = [torch.tensor([1]), torch.tensor([3, 0])]
    d2_inputs, our_inputs = [], []
    for image, box, label in zip(images, boxes, labels):
        instances = Instances(tuple(image.shape[1:]), gt_boxes=Boxes(box), gt_classes=label)
        d2_inputs.append({"image": image, "instances": instances})
        our_inputs.append({"image": image, "targets": {"boxes": box, "labels": label}})
    expected, losses = ours(our_inputs), theirs(d2_inputs)
    assert set(losses) == set(expected) and "loss_ce_0" in losses
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key], atol=1e-5, rtol=1e-5)
    sum(losses.values()).backward()
    assert theirs.backbone.stem.conv1.weight.grad is not None


def test_training_without_instances_names_the_input():
    _, theirs, _ = perturbed_models("plain")
    theirs.train()
    with pytest.raises(KeyError, match=r"batched_inputs\[0\]\['instances'\]"):
        theirs([{"image": _images()[0]}])


def test_category_id_label_space_is_refused_with_the_fix():
    _, _, d2_cfg = perturbed_models("plain")
    d2_cfg.MODEL.DEFORMABLE_DETR.LABEL_SPACE = "category_id"
    with pytest.raises(ValueError, match="--to detectron2"):
        build_model(d2_cfg)


@BACKBONE_REGISTRY.register()
class TinyTestBackbone(Backbone):
    """Strided 3x3 convolutions with outputs "p3".."p5" (strides 8, 16, 32) and a size divisibility of 32."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        self.stages = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, stride=s, padding=1)
                                    for c_in, c_out, s in [(3, 8, 8), (8, 16, 2), (16, 24, 2)])

    def forward(self, x):
        features = {}
        for name, stage in zip(("p3", "p4", "p5"), self.stages):
            x = stage(x).relu()
            features[name] = x
        return features

    def output_shape(self):
        return {name: D2ShapeSpec(channels=c, stride=s) for name, c, s in [("p3", 8, 8), ("p4", 16, 16), ("p5", 24, 32)]}

    @property
    def size_divisibility(self):
        return 32


def test_a_registered_detectron2_backbone_is_used_by_name():
    _, _, d2_cfg = perturbed_models("plain")
    d2_cfg.MODEL.BACKBONE.NAME = "TinyTestBackbone"
    d2_cfg.MODEL.DEFORMABLE_DETR.IN_FEATURES = ["p4", "p5"]
    model = build_model(d2_cfg).eval()
    assert isinstance(model.backbone, TinyTestBackbone) and model.in_features == ["p4", "p5"]
    images, mask, _ = model.preprocess_images([{"image": _images()[0]}])
    assert images.shape[-2:] == (96, 96)  # padded to the backbone's size divisibility, as ImageList does
    assert mask[0, 70:].all() and mask[0, :, 90:].all() and not mask[0, :70, :90].any()
    with torch.no_grad():
        (result,) = model([{"image": _images()[0]}])
    assert len(result["instances"]) == 10 * 4  # every (query, class) pair: fewer than DETECTIONS_PER_IMAGE


def test_unknown_in_features_are_named():
    _, _, d2_cfg = perturbed_models("plain")
    d2_cfg.MODEL.DEFORMABLE_DETR.IN_FEATURES = ["res4", "res9"]
    with pytest.raises(ValueError, match="res9"):
        build_model(d2_cfg)


@POSTPROCESSOR_REGISTRY.register()
class TopThreePostProcessor(DetectionPostProcessor):
    """Keeps three detections per image, whatever TEST.DETECTIONS_PER_IMAGE says."""

    @classmethod
    def from_config(cls, cfg):
        return {"num_detections": 3}


def test_our_registries_are_chosen_by_name_from_a_detectron2_config():
    _, _, d2_cfg = perturbed_models("plain")
    d2_cfg.MODEL.DEFORMABLE_DETR.POSTPROCESSOR.NAME = "TopThreePostProcessor"
    model = build_model(d2_cfg).eval()
    with torch.no_grad():
        (result,) = model([{"image": _images()[0]}])
    assert isinstance(model.postprocessor, TopThreePostProcessor) and len(result["instances"]) == 3


def test_config_holds_our_defaults_under_our_names():
    from detectron2.config import get_cfg as get_detectron2_cfg

    from ddetr_plugin.config import get_cfg
    from ddetr_plugin.integrations.detectron2 import add_deformable_detr_config, to_ddetr_cfg

    cfg = get_detectron2_cfg()
    add_deformable_detr_config(cfg)
    ours = get_cfg()
    assert cfg.MODEL.DEFORMABLE_DETR.TRANSFORMER == ours.MODEL.TRANSFORMER
    assert cfg.MODEL.DEFORMABLE_DETR.NUM_QUERIES == ours.MODEL.NUM_QUERIES == 300
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model" and cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.1
    cfg.MODEL.DEFORMABLE_DETR.MATCHER.COST_GIOU = 7.0
    cfg.SOLVER.BACKBONE_LR_MULTIPLIER = 0.5
    converted = to_ddetr_cfg(cfg)
    assert converted.MODEL.MATCHER.COST_GIOU == 7.0 and converted.SOLVER.BACKBONE_LR_MULTIPLIER == 0.5
    with pytest.raises(KeyError, match="add_deformable_detr_config"):
        to_ddetr_cfg(get_detectron2_cfg())
