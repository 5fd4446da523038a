"""DeformableDETR end to end on tiny inputs: variants, shapes, scaling, padding invariance, layout."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ddetr_plugin.modeling  # noqa: F401  (registers backbones and position encodings)
import ddetr_plugin.modeling.criterion  # noqa: F401
import ddetr_plugin.modeling.matcher  # noqa: F401
from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.backbone import ShapeSpec
from ddetr_plugin.modeling.meta_arch import DeformableDETR, build_model
from ddetr_plugin.modeling.position_encoding import PositionEmbeddingSine
from ddetr_plugin.modeling.postprocessor import DetectionPostProcessor
from ddetr_plugin.modeling.transformer import DeformableTransformer

from tests._support.detection_batches import detection_batch
from tests._support.tiny_configs import SINGLE_SCALE
from tests._support.tiny_models import DEC_LAYERS, META_ARCH_VARIANTS, NUM_CLASSES, NUM_QUERIES, tiny_model


def _loss_names(num_aux: int, enc: bool) -> set:
    suffixes = [""] + [f"_{i}" for i in range(num_aux)] + (["_enc"] if enc else [])
    return {term + suffix for term in ("loss_ce", "loss_bbox", "loss_giou") for suffix in suffixes}


@pytest.mark.parametrize("variant", list(META_ARCH_VARIANTS))
def test_train_and_eval_on_a_padded_batch(variant):
    model = tiny_model(variant)
    model.train()
    losses = model(detection_batch())
    assert set(losses) == _loss_names(DEC_LAYERS - 1, enc=variant == "two_stage")
    assert all(value.dim() == 0 and torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    assert model.class_embed[DEC_LAYERS - 1].weight.grad.abs().max() > 0
    assert model.input_proj[0][0].weight.grad.abs().max() > 0
    assert model.backbone.body.layer4[0].conv1.weight.grad.abs().max() > 0

    model.eval()
    with torch.no_grad():
        results = model(detection_batch(with_targets=False))
    assert len(results) == 2
    for result, (height, width) in zip(results, [(64, 80), (96, 192)]):
        assert set(result) == {"boxes", "scores", "labels"}
        assert result["boxes"].shape == (NUM_QUERIES * NUM_CLASSES, 4)  # fewer than 100 pairs exist
        centres = (result["boxes"][:, :2] + result["boxes"][:, 2:]) / 2
        assert (centres >= 0).all() and (centres[:, 0] <= width).all() and (centres[:, 1] <= height).all()
        assert (result["boxes"][:, 2:] >= result["boxes"][:, :2]).all()
        assert ((result["labels"] >= 0) & (result["labels"] < NUM_CLASSES)).all()


def test_forward_raw_shapes_and_eval_scaling():
    model = tiny_model("two_stage").eval()
    images, padding_mask, sizes = model.preprocess_images(detection_batch(with_targets=False))
    assert images.shape == (2, 3, 64, 96) and sizes == [(64, 80), (48, 96)]
    with torch.no_grad():
        outputs = model.forward_raw(images, padding_mask)
    assert outputs["pred_logits"].shape == (2, NUM_QUERIES, NUM_CLASSES)
    assert outputs["pred_boxes"].shape == (2, NUM_QUERIES, 4)
    assert ((outputs["pred_boxes"] > 0) & (outputs["pred_boxes"] < 1)).all()
    assert len(outputs["aux_outputs"]) == DEC_LAYERS - 1
    assert outputs["aux_outputs"][0]["pred_boxes"].shape == (2, NUM_QUERIES, 4)
    # levels of a 64x96 batch: strides 8, 16, 32 and the extra stride-64 level
    num_positions = 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2
    assert outputs["enc_outputs"]["pred_logits"].shape == (2, num_positions, NUM_CLASSES)
    assert outputs["enc_outputs"]["pred_boxes"].shape == (2, num_positions, 4)

    # detections are the normalized boxes of the unpadded image times the original size
    with torch.no_grad():
        results = model(detection_batch(with_targets=False))
    for index, (height, width) in enumerate([(64, 80), (96, 192)]):
        cx, cy, w, h = outputs["pred_boxes"][index].unbind(-1)
        x0, y0, x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height
        xyxy = torch.stack([x0, y0, x1, y1], -1)
        best = results[index]["scores"].argmax()
        query = (outputs["pred_logits"][index].sigmoid() == results[index]["scores"][best]).nonzero()[0, 0]
        torch.testing.assert_close(results[index]["boxes"][best], xyxy[query])


def test_without_aux_loss_or_two_stage():
    model = tiny_model("plain", "MODEL.AUX_LOSS", False).eval()
    images, padding_mask, _ = model.preprocess_images(detection_batch(with_targets=False))
    with torch.no_grad():
        outputs = model.forward_raw(images, padding_mask)
    assert outputs["aux_outputs"] == [] and outputs["enc_outputs"] is None
    model.train()
    assert set(model(detection_batch())) == _loss_names(0, enc=False)


def test_preprocessing_and_targets():
    model = tiny_model("plain")
    inputs = detection_batch()
    images, padding_mask, sizes = model.preprocess_images(inputs)
    pixel = inputs[1]["image"][:, 5, 7]
    expected = (pixel - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    torch.testing.assert_close(images[1, :, 5, 7], expected)
    assert padding_mask[0, :, :80].logical_not().all() and padding_mask[0, :, 80:].all()
    assert padding_mask[1, :48, :].logical_not().all() and padding_mask[1, 48:, :].all()
    assert images[1, :, 48:].abs().max() == 0 and images[0, :, :, 80:].abs().max() == 0

    targets = model.prepare_targets(inputs, sizes)
    # image 0 is 64 x 80: box (4, 8, 40, 60) -> centre (22, 34), size (36, 52)
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[22 / 80, 34 / 64, 36 / 80, 52 / 64]]))
    torch.testing.assert_close(targets[1]["boxes"][1], torch.tensor([70 / 96, 28 / 48, 40 / 96, 36 / 48]))
    assert targets[1]["labels"].tolist() == [4, 0]


# ---------------------------------------------------------------- padding invariance
class PoolingBackbone(nn.Module):
    """Average pooling per stride and a bias-free 1x1 conv: every output pixel sees only its own
    block of input pixels, and zero padding stays zero, so features do not depend on padding."""

    def __init__(self):
        super().__init__()
        self.proj8 = nn.Conv2d(3, 16, 1, bias=False)
        self.proj16 = nn.Conv2d(3, 24, 1, bias=False)

    def forward(self, images):
        return {"p3": self.proj8(F.avg_pool2d(images, 8)), "p4": self.proj16(F.avg_pool2d(images, 16))}

    def output_shape(self):
        return {"p3": ShapeSpec(16, 8), "p4": ShapeSpec(24, 16)}


@pytest.mark.parametrize("refine", [False, True])
def test_padded_image_gives_the_same_detections_as_alone(refine):
    torch.manual_seed(0)
    transformer = DeformableTransformer(
        d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
        num_feature_levels=3, enc_num_points=2, dec_num_points=2,
    )
    model = DeformableDETR(
        backbone=PoolingBackbone(), position_encoding=PositionEmbeddingSine(16), transformer=transformer,
        num_classes=NUM_CLASSES, num_queries=NUM_QUERIES, with_box_refine=refine,
        postprocessor=DetectionPostProcessor(10),
    ).eval()
    with torch.no_grad():
        for projection in model.input_proj:
            # GroupNorm's statistics span the padding (official behaviour, not padding-invariant);
            # without it the projections map zero padding to zero, so even the extra stride-2
            # level sees at the border what the unpadded image's conv padding gives
            projection[1] = nn.Identity()
        for parameter in transformer.parameters():  # offsets reaching beyond the valid region
            parameter.add_(torch.randn_like(parameter) * 0.1)

    torch.manual_seed(1)
    # sizes are multiples of the coarsest stride (32) so that the downsampled masks are exact
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    other = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8)
    with torch.no_grad():
        alone = model([{"image": image}])[0]
        padded = model([{"image": image}, {"image": other}])[0]
    torch.testing.assert_close(padded["scores"], alone["scores"], atol=1e-5, rtol=1e-5)
    assert padded["labels"].tolist() == alone["labels"].tolist()
    torch.testing.assert_close(padded["boxes"], alone["boxes"], atol=1e-3, rtol=1e-5)


# ---------------------------------------------------------------- initialisation and layout
def test_head_initialisation():
    bias_value = -math.log((1 - 0.01) / 0.01)
    plain = tiny_model("plain")
    assert plain.class_embed[0] is plain.class_embed[DEC_LAYERS - 1]  # one shared head
    torch.testing.assert_close(plain.class_embed[0].bias, torch.full((NUM_CLASSES,), bias_value))
    assert plain.bbox_embed[0].layers[2].weight.abs().max() == 0
    assert plain.bbox_embed[0].layers[2].bias.tolist() == [0, 0, -2, -2]
    for projection in plain.input_proj:
        assert projection[0].bias.abs().max() == 0
    assert isinstance(plain.input_proj[3][0], nn.Conv2d) and plain.input_proj[3][0].stride == (2, 2)

    refine = tiny_model("box_refine")
    assert refine.class_embed[0] is not refine.class_embed[1]
    torch.testing.assert_close(refine.class_embed[0].weight, refine.class_embed[1].weight)  # copies of one init
    # only the first head gets the -2 size bias, as the official
    assert refine.bbox_embed[0].layers[2].bias.tolist() == [0, 0, -2, -2]
    assert refine.bbox_embed[1].layers[2].bias.tolist() == [0, 0, 0, 0]

    two_stage = tiny_model("two_stage")
    assert len(two_stage.class_embed) == DEC_LAYERS + 1  # the last one scores encoder proposals
    assert all(head.layers[2].bias.abs().max() == 0 for head in two_stage.bbox_embed)
    assert not hasattr(two_stage, "query_embed")


# (variant options, trainable parameters, state-dict keys): the counts of the official models
# (39.85M, 40.63M, 40.96M, 33.84M; 561, 597 and 630 keys, less the decoder's head aliases here)
OFFICIAL_R50 = [
    ([], 39_847_265, 561),
    (["MODEL.WITH_BOX_REFINE", True], 40_627_260, 597 - 6 * 6),
    (["MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True], 40_959_129, 630 - 7 * 6 - 7 * 2),
    (SINGLE_SCALE, 33_844_193, None),
]


@pytest.mark.parametrize("options,num_parameters,num_keys", OFFICIAL_R50)
def test_r50_matches_the_official_size_and_layout(options, num_parameters, num_keys):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"] + options)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == num_parameters
    state = model.state_dict()
    if num_keys is not None:
        assert len(state) == num_keys
    levels = cfg.MODEL.NUM_FEATURE_LEVELS
    shapes = {
        "transformer.level_embed": (levels, 256),
        "transformer.encoder.layers.5.self_attn.sampling_offsets.weight": (8 * levels * 4 * 2, 256),
        "transformer.encoder.layers.5.self_attn.attention_weights.weight": (8 * levels * 4, 256),
        "transformer.encoder.layers.5.linear1.weight": (1024, 256),
        "transformer.decoder.layers.5.self_attn.in_proj_weight": (768, 256),
        "transformer.decoder.layers.5.norm3.weight": (256,),
        "input_proj.0.0.weight": (256, 512 if cfg.MODEL.NUM_FEATURE_LEVELS == 4 else 2048, 1, 1),
        "class_embed.5.weight": (91, 256),
        "bbox_embed.5.layers.2.weight": (4, 256),
        "backbone.body.layer4.2.bn3.running_var": (2048,),
    }
    if cfg.MODEL.TWO_STAGE:
        shapes.update({"transformer.pos_trans.weight": (512, 512), "transformer.enc_output.weight": (256, 256),
                       "class_embed.6.weight": (91, 256)})
        assert "query_embed.weight" not in state and "transformer.reference_points.weight" not in state
    else:
        shapes.update({"query_embed.weight": (300, 512), "transformer.reference_points.weight": (2, 256)})
    if cfg.MODEL.NUM_FEATURE_LEVELS == 4:
        shapes["input_proj.3.0.weight"] = (256, 2048, 3, 3)
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(key.startswith(("pixel_", "criterion", "postprocessor")) for key in state)


def test_errors_name_the_problem():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "NoSuchDETR"])
    with pytest.raises(KeyError, match="NoSuchDETR.*DeformableDETR"):
        build_model(cfg)
    model = tiny_model("plain")
    with pytest.raises(KeyError, match=r"batched_inputs\[0\]\['targets'\]"):
        model.train()(detection_batch(with_targets=False))
