"""Checkpoints and configs between ours and detectron2's: exact round trips, loads with no missing or
unexpected keys, category_id class heads cut to the dataset's classes, clear refusals."""
import logging
from pathlib import Path

import pytest
import torch

from tests._support.detectron2_models import TINY, VARIANTS, tiny_cfg  # noqa: I001  (skips without detectron2)

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model as build_detectron2_model

from ddetr_plugin.checkpoint.class_rows import COCO_CATEGORY_IDS
from ddetr_plugin.config.dotted import write_config
from ddetr_plugin.config import load_config
from ddetr_plugin.integrations.detectron2.conversion import load_detectron2_config, to_detectron2
from ddetr_plugin.modeling import build_model

from tests._support.paths import ROOT
from tests._support.tool_scripts import load_tool


def _convert(*argv):
    assert load_tool("convert_checkpoint").main([str(a) for a in argv]) == 0


def _our_checkpoint(tmp_path, variant: str) -> Path:
    """Our config file (with MODEL.WEIGHTS) and checkpoint of a perturbed tiny model."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(variant))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    path = tmp_path / "ours.pth"
    torch.save({"model": model.state_dict()}, path)
    config = tmp_path / "ours.yaml"
    overrides = TINY + VARIANTS[variant]
    write_config(str(config), {**dict(zip(overrides[::2], overrides[1::2])), "MODEL.WEIGHTS": str(path)})
    return config


def test_round_trip_through_detectron2_is_exact_and_loads_with_detectron2s_checkpointer(tmp_path, caplog):
    config = _our_checkpoint(tmp_path, "two_stage")
    _convert("--to", "detectron2", "--config", config, "--output", tmp_path / "d2.pth")
    d2_cfg = load_detectron2_config(str(tmp_path / "d2.yaml"))
    assert d2_cfg.MODEL.WEIGHTS == str(tmp_path / "d2.pth") and d2_cfg.MODEL.RESNETS.DEPTH == 18
    model = build_detectron2_model(d2_cfg)
    with caplog.at_level(logging.WARNING):
        DetectionCheckpointer(model).load(d2_cfg.MODEL.WEIGHTS)
    assert not [r for r in caplog.records if "not found" in r.getMessage() or "not used" in r.getMessage()]
    model.load_state_dict(torch.load(tmp_path / "d2.pth", weights_only=True)["model"], strict=True)

    _convert("--from", "detectron2", "--config", tmp_path / "d2.yaml", "--input", tmp_path / "d2.pth",
             "--output", tmp_path / "back.pth", "--config-out", tmp_path / "back.yaml")
    original = torch.load(tmp_path / "ours.pth", weights_only=True)["model"]
    back = torch.load(tmp_path / "back.pth", weights_only=True)["model"]
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in original)
    cfg, back_cfg = load_config(str(config)), load_config(str(tmp_path / "back.yaml"))
    assert back_cfg.MODEL.WEIGHTS == str(tmp_path / "back.pth")
    assert {k: v for k, v in back_cfg.MODEL.items() if k != "WEIGHTS"} == \
        {k: v for k, v in cfg.MODEL.items() if k != "WEIGHTS"}
    assert back_cfg.INPUT == cfg.INPUT and back_cfg.SOLVER == cfg.SOLVER and back_cfg.TEST == cfg.TEST


def test_official_r50_layout_loads_strictly():
    cfg = load_config(str(ROOT / "configs" / "deformable_detr_r50_box_refine.yaml"),
                      ["MODEL.DEVICE", "cpu", "MODEL.TRANSFORMER.ENC_LAYERS", 1, "MODEL.TRANSFORMER.DEC_LAYERS", 1])
    state_dict, d2_cfg = to_detectron2(build_model(cfg).state_dict(), cfg)
    assert d2_cfg.MODEL.BACKBONE.FREEZE_AT == 2 and d2_cfg.MODEL.RESNETS.NORM == "FrozenBN"
    assert "backbone.res5.2.conv3.norm.running_var" in state_dict and "backbone.res2.0.shortcut.weight" in state_dict
    model = build_detectron2_model(d2_cfg)
    model.load_state_dict(state_dict, strict=True)
    frozen = {name.split(".")[1] for name, p in model.named_parameters() if name.startswith("backbone.")
              and not p.requires_grad}
    assert frozen == {"stem", "res2"}


def test_category_id_head_is_cut_to_cocos_80_classes_in_id_order():
    cfg = tiny_cfg("plain", "MODEL.NUM_CLASSES", 91, "MODEL.LABEL_SPACE", "category_id")
    model = build_model(cfg)
    state_dict, d2_cfg = to_detectron2(model.state_dict(), cfg)  # coco_2017_val is not here: COCO's ids
    assert d2_cfg.MODEL.DEFORMABLE_DETR.NUM_CLASSES == 80 and d2_cfg.MODEL.DEFORMABLE_DETR.LABEL_SPACE == "contiguous"
    rows = torch.tensor(COCO_CATEGORY_IDS)
    for index in range(2):
        assert torch.equal(state_dict[f"class_embed.{index}.weight"], model.state_dict()["class_embed.0.weight"][rows])
    build_detectron2_model(d2_cfg).load_state_dict(state_dict, strict=True)


@pytest.mark.parametrize("overrides, message", [
    (["MODEL.BACKBONE.TRAIN_LAYERS", ["layer2", "layer4"]], "FREEZE_AT"),
    (["MODEL.BACKBONE.TRAIN_LAYERS", ["layer3", "layer4"]], "FrozenBN"),
])
def test_backbones_detectron2_cannot_express_are_refused(overrides, message):
    cfg = tiny_cfg("plain", *overrides)
    with pytest.raises(ValueError, match=message):
        to_detectron2(build_model(cfg).state_dict(), cfg)
