"""Official checkpoints (fundamentalvision/Deformable-DETR) to ours and back.

The official layout is written here independently of the converter, from the facts of
the official repository: ``backbone.0.body.*``, and the decoder's head aliases
``transformer.decoder.bbox_embed.*`` (box refinement) and ``transformer.decoder.class_embed.*``
(two-stage) saved beside the heads.
"""
import argparse
import pickle

import pytest
import torch

from ddetr_plugin.checkpoint import UnsafeCheckpointError
from ddetr_plugin.checkpoint.official import official_to_ours, ours_to_official
from ddetr_plugin.checkpoint.renaming import UnknownKeysError
from ddetr_plugin.checkpoint.variant import ModelVariant
from ddetr_plugin.config import get_cfg, load_config
from ddetr_plugin.modeling import build_model

from tests._support.tiny_configs import tiny_cfg
from tests._support.tiny_models import assert_same_tensors, perturbed_model
from tests._support.tool_scripts import load_tool


def official_layout(state: dict, refine: bool, two_stage: bool) -> dict:
    official = {}
    for key, value in state.items():
        for ours, theirs in (("backbone.body.", "backbone.0.body."), ("position_encoding.", "backbone.1.")):
            if key.startswith(ours):
                key = theirs + key[len(ours):]
        official[key] = value
        if (refine and key.startswith("bbox_embed.")) or (two_stage and key.startswith("class_embed.")):
            official["transformer.decoder." + key] = value
    return official


def official_args(**overrides) -> argparse.Namespace:
    args = dict(lr=2e-4, lr_backbone=2e-5, batch_size=2, epochs=50, backbone="resnet18", dilation=False,
                position_embedding="sine", position_embedding_scale=6.283185307179586, num_feature_levels=4,
                enc_layers=1, dec_layers=2, dim_feedforward=48, hidden_dim=32, dropout=0.0, nheads=2,
                num_queries=6, dec_n_points=3, enc_n_points=2, masks=False, aux_loss=True, set_cost_class=3,
                set_cost_bbox=5, set_cost_giou=2, cls_loss_coef=2, bbox_loss_coef=5, giou_loss_coef=2,
                focal_alpha=0.3, dataset_file="coco", with_box_refine=False, two_stage=False)
    args.update(overrides)
    return argparse.Namespace(**args)


@pytest.mark.parametrize("variant", ["plain", "box_refine", "two_stage"])
def test_an_official_training_checkpoint_converts(tmp_path, variant):
    refine, two_stage = variant != "plain", variant == "two_stage"
    model = perturbed_model(tiny_cfg(variant))
    state = model.state_dict()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    checkpoint = {
        "model": official_layout(state, refine, two_stage),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 40).state_dict(),
        "epoch": 49,
        "args": official_args(with_box_refine=refine, two_stage=two_stage),
    }
    # the official checkpoints predate torch 1.6's zip format: write the plain one the old way
    torch.save(checkpoint, tmp_path / "official.pth", _use_new_zipfile_serialization=variant != "plain")

    load_tool("convert_checkpoint").main([
        "--from", "official", "--input", str(tmp_path / "official.pth"),
        "--output", str(tmp_path / "ours.pth"), "--config-out", str(tmp_path / "ours.yaml")])

    converted = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert list(converted) == ["model"]
    assert_same_tensors(converted["model"], state)
    cfg = load_config(str(tmp_path / "ours.yaml"))
    assert ModelVariant.from_config(cfg) == ModelVariant.from_config(tiny_cfg(variant))
    assert cfg.MODEL.WEIGHTS == str(tmp_path / "ours.pth")
    # the training settings stored in args carry over
    assert (cfg.MODEL.MATCHER.COST_CLASS, cfg.MODEL.CRITERION.FOCAL_ALPHA, cfg.MODEL.TRANSFORMER.DROPOUT) == \
        (3.0, 0.3, 0.0)
    build_model(cfg).load_state_dict(converted["model"], strict=True)


def test_without_args_the_variant_still_comes_from_the_weights():
    cfg = tiny_cfg("box_refine", "MODEL.TRANSFORMER.NHEADS", 8)  # the official number of heads
    state = perturbed_model(cfg).state_dict()
    official = official_layout(state, refine=True, two_stage=False)
    # refinement from the aliases; without them, from heads that differ per layer
    for checkpoint in ({"model": official}, {k: v for k, v in official.items() if "decoder.bbox_embed" not in k}):
        converted = official_to_ours(checkpoint)
        assert converted.variant == ModelVariant.from_config(cfg)
        assert_same_tensors(converted.state_dict, state)
    # 2 heads x 4 levels x 2 points x 2 offsets: not a multiple of the 8 heads assumed without args
    with pytest.raises(ValueError, match="wrong number of heads"):
        official_to_ours({"model": official_layout(perturbed_model(tiny_cfg("plain")).state_dict(), False, False)})


@pytest.mark.parametrize("variant", ["plain", "box_refine", "two_stage", "two_stage_shared_heads",
                                     "single_scale_learned"])
def test_ours_to_official_and_back_is_exact(variant):
    cfg = tiny_cfg(variant)
    state = perturbed_model(cfg).state_dict()
    official = ours_to_official(state, cfg)
    refine, two_stage = cfg.MODEL.WITH_BOX_REFINE, cfg.MODEL.TWO_STAGE
    assert_same_tensors(official["model"], official_layout(state, refine, two_stage))
    back = official_to_ours(official)
    assert_same_tensors(back.state_dict, state)
    assert back.variant == ModelVariant.from_config(cfg)


def test_r50_two_stage_has_the_official_630_keys():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True])
    official = ours_to_official(build_model(cfg).state_dict(), cfg)["model"]
    assert len(official) == 630
    assert official["transformer.decoder.class_embed.6.weight"].shape == (91, 256)
    assert official["backbone.0.body.layer4.2.bn3.running_var"].shape == (2048,)


def test_args_contradicting_the_weights_are_an_error():
    state = perturbed_model(tiny_cfg("plain")).state_dict()
    checkpoint = {"model": official_layout(state, False, False), "args": official_args(hidden_dim=256)}
    with pytest.raises(ValueError, match="d_model: 256 in the checkpoint's 'args', 32 in the weights"):
        official_to_ours(checkpoint)
    checkpoint["args"] = official_args(backbone="swin_t")
    with pytest.raises(ValueError, match="args.backbone is 'swin_t'"):
        official_to_ours(checkpoint)


def test_keys_of_another_model_are_refused():
    state = official_layout(perturbed_model(tiny_cfg("plain")).state_dict(), False, False)
    state["bbox_attention.q_linear.weight"] = torch.zeros(1)  # the official segmentation head
    with pytest.raises(UnknownKeysError, match="'bbox_attention.q_linear.weight'"):
        official_to_ours({"model": state})


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_with_pickled_code_is_refused_before_running_it(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": {}, "args": _Payload()}, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError):
        load_tool("convert_checkpoint").main(["--from", "official", "--input", str(path),
                                              "--output", str(tmp_path / "out.pth")])
    assert "this must never run" not in capsys.readouterr().out
    assert not (tmp_path / "out.pth").exists()


def test_export_refuses_what_the_official_code_lacks():
    cfg = tiny_cfg("plain", "MODEL.BACKBONE.NORM", "GN")
    with pytest.raises(ValueError, match="NORM is 'GN'"):
        ours_to_official(build_model(cfg).state_dict(), cfg)
    cfg = tiny_cfg("plain", "MODEL.TRANSFORMER.ACTIVATION", "gelu")
    with pytest.raises(ValueError, match="ACTIVATION is 'gelu'"):
        ours_to_official(build_model(cfg).state_dict(), cfg)


def test_what_is_not_an_official_checkpoint_is_named():
    with pytest.raises(ValueError, match="an official checkpoint is a dict, got list"):
        official_to_ours([])
    no_model = r"an official checkpoint has a 'model' state dict; found keys \['args', 'epoch'\]"
    with pytest.raises(ValueError, match=no_model):
        official_to_ours({"epoch": 3, "args": official_args()})
