"""configs/mmdet/: each loads with mmengine (inheriting mmdet's packaged files) and builds PluginDeformableDETR."""
from pathlib import Path

import pytest

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402

pytest.importorskip("pkg_resources", reason="mmengine 0.10 resolves 'mmdet::' config paths with pkg_resources: "
                                            "pip install 'setuptools<81' (in requirements-mmdet.txt)")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "mmdet"
OFFICIAL = {"deformable_detr_r50.py": (False, False), "deformable_detr_r50_box_refine.py": (True, False),
            "deformable_detr_r50_two_stage.py": (True, True)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_variant_is_mmdet_config_with_our_model(name):
    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.model.type == "PluginDeformableDETR" and cfg.model.backbone.depth == 50
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model)
    assert (model.detector.with_box_refine, model.detector.two_stage) == OFFICIAL[name]
    assert model.detector.num_queries == 300 and model.clip_boxes
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys["backbone"].lr_mult == 0.1


def test_quickstart_shapes_config():
    cfg = Config.fromfile(str(CONFIGS / "quickstart_shapes.py"))
    model = MODELS.build(cfg.model)
    assert model.ddetr_cfg.MODEL.NUM_QUERIES == 30 and model.detector.two_stage and not model.clip_boxes
    assert cfg.train_dataloader.dataset.type == "ShapesDataset" and cfg.val_evaluator.type == "ShapesCocoMetric"
    assert cfg.train_cfg.max_iters == 1500 and cfg.param_scheduler[0].milestones == [1270]
