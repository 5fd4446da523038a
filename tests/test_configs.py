"""Every YAML file under configs/ loads, and the official variants differ from the base as published."""
from pathlib import Path

import pytest

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling.backbone import ResNetBackbone

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# configs/detectron2/ holds detectron2 configs (tests/integrations/detectron2/test_configs.py)
ALL_CONFIGS = sorted(path for path in CONFIGS.rglob("*.yaml") if "detectron2" not in path.parts)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_is_consistent(path):
    cfg = load_config(str(path))
    assert cfg.MODEL.NUM_FEATURE_LEVELS >= len(cfg.MODEL.BACKBONE.OUT_FEATURES)
    assert cfg.MODEL.TRANSFORMER.D_MODEL % 2 == 0  # the position encoding's two axes share it


@pytest.mark.parametrize(
    "name, levels, out_features, dilation, box_refine, two_stage",
    [
        ("Base-DeformableDETR", 4, ["layer2", "layer3", "layer4"], False, False, False),
        ("deformable_detr_r50", 4, ["layer2", "layer3", "layer4"], False, False, False),
        ("deformable_detr_r50_single_scale", 1, ["layer4"], False, False, False),
        ("deformable_detr_r50_single_scale_dc5", 1, ["layer4"], True, False, False),
        ("deformable_detr_r50_box_refine", 4, ["layer2", "layer3", "layer4"], False, True, False),
        ("deformable_detr_r50_two_stage", 4, ["layer2", "layer3", "layer4"], False, True, True),
    ],
)
def test_official_variants(name, levels, out_features, dilation, box_refine, two_stage):
    cfg = load_config(str(CONFIGS / f"{name}.yaml"))
    model = cfg.MODEL
    assert model.NUM_FEATURE_LEVELS == levels
    assert model.BACKBONE.OUT_FEATURES == out_features
    assert model.BACKBONE.DILATION is dilation
    assert model.WITH_BOX_REFINE is box_refine
    assert model.TWO_STAGE is two_stage
    assert (model.BACKBONE.DEPTH, model.BACKBONE.NORM) == (50, "FrozenBN")
    assert model.NUM_QUERIES == 300 and model.NUM_CLASSES == 91
    assert cfg.DATASETS.TRAIN == ["coco_2017_train"] and cfg.DATASETS.TEST == ["coco_2017_val"]
    assert cfg.SOLVER.IMS_PER_BATCH == 32


def test_dc5_backbone_from_config_has_stride_16():
    cfg = load_config(str(CONFIGS / "deformable_detr_r50_single_scale_dc5.yaml"))
    backbone = ResNetBackbone(**ResNetBackbone.from_config(cfg))
    assert backbone.output_shape() == {"layer4": (2048, 16)}
