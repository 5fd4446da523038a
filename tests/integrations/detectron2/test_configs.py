"""Every config of configs/detectron2/ loads with detectron2's config and the Deformable DETR keys, and the
variants differ from the base as the official ones do."""
from pathlib import Path

import pytest

from tests._support.detectron2_models import detectron2  # noqa: F401  (skips without detectron2)

from detectron2.modeling import build_model

from ddetr_plugin.integrations.detectron2 import to_ddetr_cfg
from ddetr_plugin.integrations.detectron2.conversion import load_detectron2_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "detectron2"
VARIANTS = {"deformable_detr_r50.yaml": (False, False), "deformable_detr_r50_box_refine.yaml": (True, False),
            "deformable_detr_r50_two_stage.yaml": (True, True), "quickstart_shapes.yaml": (True, True)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_loads_with_the_variant_and_our_defaults(name):
    cfg = load_detectron2_config(str(CONFIGS / name))
    model_cfg = cfg.MODEL.DEFORMABLE_DETR
    assert (model_cfg.WITH_BOX_REFINE, model_cfg.TWO_STAGE) == VARIANTS[name]
    assert cfg.MODEL.META_ARCHITECTURE == "DeformableDETR" and not cfg.MODEL.RESNETS.STRIDE_IN_1X1
    assert cfg.INPUT.FORMAT == "RGB" and cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    assert to_ddetr_cfg(cfg).MODEL.MATCHER.COST_CLASS == 2.0


def test_quickstart_is_our_quickstart_model_on_detectrons_resnet18():
    from ddetr_plugin.config import load_config

    cfg = load_detectron2_config(str(CONFIGS / "quickstart_shapes.yaml"))
    ours = load_config(str(CONFIGS.parent / "quickstart" / "shapes.yaml"))
    assert to_ddetr_cfg(cfg).MODEL.TRANSFORMER == ours.MODEL.TRANSFORMER
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.DEFORMABLE_DETR.NUM_QUERIES == ours.MODEL.NUM_QUERIES
    assert sum(p.numel() for p in build_model(cfg).parameters()) > 0
