"""PluginDeformableDETR: mmdet's config dict in, mmdet's predictions and losses out; loading checkpoints."""
import copy

import pytest
import torch

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmdet.registry import MODELS  # noqa: E402
from mmengine.runner import load_checkpoint, save_checkpoint  # noqa: E402

from ddetr_plugin.checkpoint.class_rows import COCO_CATEGORY_IDS  # noqa: E402
from ddetr_plugin.checkpoint.renaming import UnknownKeysError  # noqa: E402
from ddetr_plugin.config.mmdet_model import MMDetConfigError  # noqa: E402
from ddetr_plugin.integrations.mmdet.detector import padding_mask  # noqa: E402
from ddetr_plugin.integrations.mmdet.load_hook import CheckpointMismatchError  # noqa: E402
from tests._support.mmdet_models import mmdet_model, packaged_config, padded_batch, plugin_model  # noqa: E402
from tests._support.tiny_configs import dump_config, tiny_cfg  # noqa: E402
from tests._support.tiny_models import perturbed_model  # noqa: E402


@pytest.mark.parametrize("variant", ["plain", "two_stage"])
def test_predicts_what_mmdet_predicts(variant, tmp_path):
    cfg = packaged_config(variant)
    reference = mmdet_model(cfg)
    path = tmp_path / "epoch_1.pth"
    save_checkpoint({"meta": {"cfg": cfg.pretty_text}, "state_dict": reference.state_dict()}, str(path))
    plugin = plugin_model(cfg)
    load_checkpoint(plugin, str(path), map_location="cpu")  # what load_from= does
    inputs, samples = padded_batch(reference)
    with torch.no_grad():
        expected = reference.predict(inputs, copy.deepcopy(samples))
        predicted = plugin(inputs, copy.deepcopy(samples), mode="predict")
        expected_tensors = reference._forward(inputs, samples)
        tensors = plugin(inputs, samples, mode="tensor")
    for ours, theirs in zip(tensors, expected_tensors):
        assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 2e-4
    for ours, theirs in zip(predicted, expected):
        ours, theirs = ours.pred_instances, theirs.pred_instances
        assert len(ours) == len(theirs) == 100
        assert torch.equal(ours.labels, theirs.labels)
        assert torch.allclose(ours.scores, theirs.scores, atol=1e-5)
        # in ori_shape pixels (scale_factor 0.5): twice the network's box
        assert torch.allclose(ours.bboxes, theirs.bboxes, atol=2e-2)
        assert ours.bboxes.max() > max(inputs.shape[-2:])


def test_losses_match_mmdet():
    cfg = packaged_config("two_stage")
    layers = (cfg.model.encoder.layer_cfg, cfg.model.decoder.layer_cfg)
    for layer in layers:  # no dropout: the two models then compute the same function in training
        layer.ffn_cfg.ffn_drop = 0.0
    cfg.model.encoder.layer_cfg.self_attn_cfg.dropout = 0.0
    cfg.model.decoder.layer_cfg.self_attn_cfg.dropout = 0.0
    cfg.model.decoder.layer_cfg.cross_attn_cfg.dropout = 0.0
    reference = mmdet_model(cfg).train()
    plugin = plugin_model(cfg).train()
    plugin.load_state_dict(reference.state_dict())
    inputs, samples = padded_batch(reference, with_gt=True)
    expected = reference.loss(inputs, samples)
    losses = plugin(inputs, samples, mode="loss")
    assert sorted(losses) == sorted(expected)
    assert {"loss_cls", "d0.loss_iou", "enc_loss_bbox"} <= set(losses)
    for key, value in expected.items():
        assert torch.allclose(losses[key], value, rtol=1e-4, atol=1e-5), key
    sum(losses.values()).backward()
    assert plugin.detector.backbone.body.layer4[0].conv1.weight.grad.abs().max() > 0


def our_checkpoint(tmp_path, *overrides):
    """(our tiny two-stage model, its checkpoint file, the YAML)."""
    cfg = tiny_cfg("two_stage", *overrides)
    model = perturbed_model(cfg)
    path = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "iteration": 10}, path)
    return model, str(path), dump_config(cfg, tmp_path / "ours.yaml")


def test_loads_our_checkpoint_file_and_predicts_as_ours(tmp_path):
    ours, path, yaml = our_checkpoint(tmp_path)
    plugin = MODELS.build(dict(type="PluginDeformableDETR", ddetr_config=yaml)).eval()
    load_checkpoint(plugin, path, map_location="cpu")
    for key, value in ours.state_dict().items():
        assert torch.equal(plugin.detector.state_dict()[key], value), key
    inputs, samples = padded_batch(plugin)
    with torch.no_grad():
        expected = ours.forward_raw(inputs, padding_mask(inputs, samples))
        logits, boxes = plugin(inputs, samples, mode="tensor")
        predicted = plugin(inputs, copy.deepcopy(samples), mode="predict")
        sizes = torch.tensor([sample.img_shape for sample in samples], dtype=torch.float32)
        detections = ours.postprocessor(expected, sizes)
    assert torch.equal(logits[-1], expected["pred_logits"]) and torch.equal(boxes[-1], expected["pred_boxes"])
    # our evaluation's detections: boxes not clipped to the image (as the official), scaled to ori_shape
    assert not plugin.clip_boxes
    for sample, detection in zip(predicted, detections):
        assert torch.equal(sample.pred_instances.scores, detection["scores"])
        assert torch.allclose(sample.pred_instances.bboxes, detection["boxes"] / 0.5)


def test_category_id_checkpoint_gets_coco_classes(tmp_path):
    ours, path, yaml = our_checkpoint(tmp_path, "MODEL.NUM_CLASSES", 91)
    plugin = MODELS.build(dict(type="PluginDeformableDETR", ddetr_config=yaml,
                               ddetr_options=["MODEL.NUM_CLASSES", 80]))
    load_checkpoint(plugin, path, map_location="cpu")
    loaded = plugin.detector.class_embed
    rows = torch.tensor(COCO_CATEGORY_IDS)
    assert torch.equal(loaded[0].weight, ours.class_embed[0].weight[rows])
    # the encoder's head scores proposals with logit 0: that row stays first
    assert torch.equal(loaded[-1].bias[0], ours.class_embed[-1].bias[0])
    assert torch.equal(loaded[-1].bias[1:], ours.class_embed[-1].bias[rows[1:]])


def test_unknown_or_incomplete_checkpoints_fail_loudly(tmp_path):
    cfg = packaged_config("refine")
    plugin = plugin_model(cfg)
    stranger = tmp_path / "other.pth"
    torch.save({"state_dict": {"roi_head.bbox_head.fc_cls.weight": torch.zeros(3, 3)}}, stranger)
    with pytest.raises(UnknownKeysError, match="roi_head.bbox_head.fc_cls.weight"):
        load_checkpoint(plugin, str(stranger), map_location="cpu")
    state_dict = mmdet_model(cfg).state_dict()
    del state_dict["decoder.layers.1.norms.2.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"mmdet layout.*missing detector\.transformer\.decoder\.layers\.1"
                                                      r"\.norm3\.weight"):
        plugin.load_state_dict(state_dict, strict=False)


@pytest.mark.parametrize("path, value, message", [
    ("bbox_head.loss_cls", dict(type="CrossEntropyLoss"), r"model\.bbox_head\.loss_cls\.type is 'CrossEntropyLoss'"),
    ("encoder.layer_cfg.ffn_cfg.ffn_drop", 0.2, r"dropouts differ \(encoder self-attention 0\.1, encoder FFN 0\.2"),
    ("neck.act_cfg", dict(type="ReLU"), r"model\.neck\.act_cfg is \{'type': 'ReLU'\}; only None"),
    ("encoder.layer_cfg.self_attn_cfg.deform_groups", 2, r"self_attn_cfg has fields that are not supported: "
                                                          r"deform_groups"),
    ("train_cfg.assigner.match_costs", [dict(type="ClassificationCost", weight=1.0)], r"match_costs\[0\]"),
    ("bbox_head.sync_cls_avg_factor", False, r"sync_cls_avg_factor is False; only True"),
])
def test_refuses_what_it_cannot_honour(path, value, message):
    cfg = packaged_config("plain")
    node = cfg.model
    *parents, leaf = path.split(".")
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    with pytest.raises(MMDetConfigError, match=message):
        plugin_model(cfg)


def test_ddetr_config_excludes_mmdet_fields(tmp_path):
    _, _, yaml = our_checkpoint(tmp_path)
    with pytest.raises(MMDetConfigError, match=r"either ddetr_config or mmdet's model fields, not both "
                                               r"\(num_queries\)"):
        MODELS.build(dict(type="PluginDeformableDETR", ddetr_config=yaml, num_queries=10))
    with pytest.raises(MMDetConfigError, match="mean"):
        MODELS.build(dict(type="PluginDeformableDETR", ddetr_config=yaml,
                          data_preprocessor=dict(type="DetDataPreprocessor", mean=[0, 0, 0], std=[1, 1, 1],
                                                 bgr_to_rgb=True)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 inference needs a CUDA device")
def test_bf16_on_gpu_matches_fp32(tmp_path):
    cfg = packaged_config("two_stage")
    plugin = plugin_model(cfg).cuda()
    plugin.load_state_dict(mmdet_model(cfg).state_dict())
    inputs, samples = padded_batch(plugin)
    with torch.no_grad():
        logits, boxes = plugin(inputs, samples, mode="tensor")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits_bf16, boxes_bf16 = plugin(inputs, samples, mode="tensor")
    assert logits_bf16.dtype == torch.bfloat16
    assert (boxes_bf16.float() - boxes).abs().max() < 0.05
    assert (logits_bf16.float() - logits).abs().max() < 0.5
