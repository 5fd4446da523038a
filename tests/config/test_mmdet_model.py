"""mmdet's DeformableDETR model config (plain dicts) to our config keys, and reading mmengine's config text."""
import copy
import math

import pytest

from ddetr_plugin.config import get_cfg
from ddetr_plugin.config.config_text import parse_config_text
from ddetr_plugin.config.mmdet_model import MMDetConfigError, mmdet_model_settings, resnet_backbone_values
from ddetr_plugin.config.dotted import config_value

# the fields of mmdet 3.3's deformable-detr_r50_16xb2-50e_coco.py model, written out
ATTENTION = dict(embed_dims=256, batch_first=True)
FFN = dict(embed_dims=256, feedforward_channels=1024, ffn_drop=0.1)
MODEL = dict(
    num_queries=300, num_feature_levels=4, with_box_refine=False, as_two_stage=False,
    neck=dict(type="ChannelMapper", in_channels=[512, 1024, 2048], kernel_size=1, out_channels=256, act_cfg=None,
              norm_cfg=dict(type="GN", num_groups=32), num_outs=4),
    encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=dict(ATTENTION), ffn_cfg=dict(FFN))),
    decoder=dict(num_layers=6, return_intermediate=True, post_norm_cfg=None,
                 layer_cfg=dict(self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
                                cross_attn_cfg=dict(ATTENTION), ffn_cfg=dict(FFN))),
    positional_encoding=dict(num_feats=128, normalize=True, offset=-0.5),
    bbox_head=dict(type="DeformableDETRHead", num_classes=80, sync_cls_avg_factor=True,
                   loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
                   loss_bbox=dict(type="L1Loss", loss_weight=5.0), loss_iou=dict(type="GIoULoss", loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type="HungarianAssigner", match_costs=[
        dict(type="FocalLossCost", weight=2.0), dict(type="BBoxL1Cost", weight=5.0, box_format="xywh"),
        dict(type="IoUCost", iou_mode="giou", weight=2.0)])),
    test_cfg=dict(max_per_img=100),
)
BACKBONE = dict(type="ResNet", depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
                norm_cfg=dict(type="BN", requires_grad=False), norm_eval=True, style="pytorch",
                init_cfg=dict(type="Pretrained", checkpoint="torchvision://resnet50"))


def test_mmdet_deformable_detr_is_our_default_model():
    settings = mmdet_model_settings(MODEL)
    assert settings.in_channels == [512, 1024, 2048] and settings.neck_bias is False
    defaults = get_cfg()
    values = {**settings.values, **resnet_backbone_values(BACKBONE)}
    different = {key: value for key, value in values.items()
                 if not (math.isclose(value, config_value(defaults, key)) if isinstance(value, float)
                         else value == config_value(defaults, key))}
    # the official model (our defaults) has 91 category-id classes; mmdet's COCO has 80
    assert different == {"MODEL.NUM_CLASSES": 80}


@pytest.mark.parametrize("path, value, message", [
    ("decoder.layer_cfg.cross_attn_cfg.num_levels", 3, r"cross_attn_cfg\.num_levels is 3; only 4"),
    ("decoder.layer_cfg.self_attn_cfg.num_heads", 4, r"self_attn_cfg\.num_heads is 4; only 8"),
    ("encoder.layer_cfg.ffn_cfg.feedforward_channels", 2048, r"encoder's dim_feedforward \(2048\) differs"),
    ("neck.num_outs", 3, r"neck\.num_outs is 3 but num_feature_levels is 4"),
    ("bbox_head.loss_iou", dict(type="IoULoss"), r"loss_iou\.type is 'IoULoss'; only 'GIoULoss'"),
    ("test_cfg.nms", dict(iou_threshold=0.5), r"test_cfg has fields that are not supported: nms"),
    ("encoder.num_cp", 2, "activation checkpointing"),
    # our matcher's cost shares the loss's focal parameters
    ("train_cfg.assigner.match_costs", [dict(type="FocalLossCost", weight=2.0, alpha=0.3)],
     r"match_costs\[0\]\.alpha is 0.3; only 0.25"),
])
def test_fields_it_cannot_honour_are_named(path, value, message):
    model = copy.deepcopy(MODEL)
    *parents, leaf = path.split(".")
    node = model
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    with pytest.raises(MMDetConfigError, match=message):
        mmdet_model_settings(model)


def test_resnet_options():
    trained = resnet_backbone_values(dict(BACKBONE, frozen_stages=-1, norm_eval=False,
                                          norm_cfg=dict(type="SyncBN", requires_grad=True)))
    assert trained["MODEL.BACKBONE.NORM"] == "SyncBN"
    assert trained["MODEL.BACKBONE.TRAIN_LAYERS"] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(MMDetConfigError, match="style is 'caffe'"):
        resnet_backbone_values(dict(BACKBONE, style="caffe"))


def test_config_text_is_read_without_running_it():
    text = ("model = dict(\n    num_queries=30,\n    neck=dict(in_channels=[\n        128,\n    ], act_cfg=None),\n"
            "    offsets=(-0.5, 1e-06), costs={'a': True})\n"
            "hook = __import__('os').system('echo no')\nlr = 2 * 0.1\n")
    values = parse_config_text(text)
    assert values == {"model": {"num_queries": 30, "neck": {"in_channels": [128], "act_cfg": None},
                                "offsets": (-0.5, 1e-06), "costs": {"a": True}}}
