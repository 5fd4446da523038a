"""MMDetection layouts to ours and back, without mmdet (the parity with mmdet's own model is in
tests/integrations/mmdet/)."""
import pytest
import torch

from ddetr_plugin.checkpoint.class_rows import COCO_CATEGORY_IDS
from ddetr_plugin.checkpoint.mmdet import (
    MMDET,
    OURS,
    PLUGIN,
    PLUGIN_PREFIX,
    category_ids_to_coco_classes,
    fit_input_proj_biases,
    mmdet_to_ours,
    ours_to_mmdet,
    ours_to_mmdet_state_dict,
    state_dict_layout,
    to_ours,
)
from ddetr_plugin.checkpoint.renaming import UnknownKeysError

from tests._support.tiny_configs import tiny_cfg
from tests._support.tiny_models import assert_same_tensors, perturbed_model


@pytest.mark.parametrize("variant", ["plain", "box_refine", "two_stage"])
def test_round_trip_through_mmdet_layout(variant):
    cfg = tiny_cfg(variant)
    state = perturbed_model(cfg).state_dict()
    mmdet = ours_to_mmdet_state_dict(state)  # the renaming alone (mmdet's two-stage needs d_model 256)
    assert state_dict_layout(mmdet) == MMDET
    # facts of mmdet's layout: ResNet at backbone.*, ChannelMapper convs and its extra level, mmcv's FFN,
    # the decoder's norms in the order self-attention, cross-attention, FFN
    assert torch.equal(mmdet["backbone.layer1.0.conv1.weight"], state["backbone.body.layer1.0.conv1.weight"])
    assert torch.equal(mmdet["neck.extra_convs.0.conv.weight"], state["input_proj.3.0.weight"])
    assert torch.equal(mmdet["neck.convs.2.gn.bias"], state["input_proj.2.1.bias"])
    assert torch.equal(mmdet["decoder.layers.1.norms.0.weight"], state["transformer.decoder.layers.1.norm2.weight"])
    assert torch.equal(mmdet["encoder.layers.0.ffn.layers.1.weight"],
                       state["transformer.encoder.layers.0.linear2.weight"])
    assert torch.equal(mmdet["bbox_head.reg_branches.1.4.bias"], state["bbox_embed.1.layers.2.bias"])
    assert ("memory_trans_fc.weight" in mmdet) == (variant == "two_stage") != ("query_embedding.weight" in mmdet)
    assert_same_tensors(to_ours(mmdet), state)


def test_zero_neck_biases_are_mmdet_default_and_filled_back():
    cfg = tiny_cfg("plain")
    state = perturbed_model(cfg).state_dict()
    with_bias = ours_to_mmdet(state, cfg)
    assert "neck.convs.0.conv.bias" in with_bias["state_dict"]
    assert any("neck.bias=True" in note for note in with_bias["meta"]["notes"])
    state = {key: torch.zeros_like(value) if key.endswith(".0.bias") and key.startswith("input_proj") else value
             for key, value in state.items()}
    without = ours_to_mmdet(state, cfg)["state_dict"]
    assert not any(key.endswith("conv.bias") for key in without)
    refilled = fit_input_proj_biases(to_ours(without), with_bias=True)
    assert_same_tensors(refilled, state)
    state["input_proj.1.0.bias"][3] = 1.0
    with pytest.raises(ValueError, match="neck's bias=True"):
        fit_input_proj_biases(state, with_bias=False)


def test_plugin_layout_and_settings_without_a_config():
    cfg = tiny_cfg("box_refine", "MODEL.TRANSFORMER.NHEADS", 8)
    state = perturbed_model(cfg).state_dict()
    plugin = {PLUGIN_PREFIX + key: value for key, value in state.items()}
    assert state_dict_layout(plugin) == PLUGIN and state_dict_layout(state) == OURS
    converted = mmdet_to_ours({"meta": {"epoch": 3}, "state_dict": plugin})
    assert_same_tensors(converted.state_dict, state)
    # no model config in meta: the official 8 heads, refinement read off the (perturbed, so different) heads
    assert converted.variant.with_box_refine and converted.variant.nheads == 8
    assert converted.variant.dec_n_points == 3
    assert any("no model config" in note for note in converted.notes)


def test_category_id_heads_cut_to_coco_classes():
    plain = tiny_cfg("plain", "MODEL.NUM_CLASSES", 91, "MODEL.LABEL_SPACE", "category_id")
    state = perturbed_model(plain).state_dict()
    mmdet = ours_to_mmdet(state, plain)["state_dict"]
    rows = torch.tensor(COCO_CATEGORY_IDS)
    assert torch.equal(mmdet["bbox_head.cls_branches.1.weight"], state["class_embed.1.weight"][rows])
    state = perturbed_model(tiny_cfg("two_stage", "MODEL.NUM_CLASSES", 91)).state_dict()
    cut = category_ids_to_coco_classes(state, two_stage=True, shared_heads=False)
    assert torch.equal(cut["class_embed.0.weight"], state["class_embed.0.weight"][rows])
    encoder = cut["class_embed.2.bias"]  # 2 decoder layers: head 2 scores the proposals
    assert encoder.shape == (80,) and encoder[0] == state["class_embed.2.bias"][0]
    shared = tiny_cfg("two_stage_shared_heads", "MODEL.NUM_CLASSES", 91)
    with pytest.raises(ValueError, match="shared"):
        category_ids_to_coco_classes(perturbed_model(shared).state_dict(), two_stage=True, shared_heads=True)


def test_two_stage_needs_mmdets_width():
    cfg = tiny_cfg("two_stage")  # d_model 32
    with pytest.raises(ValueError, match="runs only with d_model 256"):
        ours_to_mmdet(perturbed_model(cfg).state_dict(), cfg)


def test_unknown_layout_is_refused():
    with pytest.raises(UnknownKeysError, match="'roi_head.fc.weight'"):
        state_dict_layout({"roi_head.fc.weight": torch.zeros(1)})
    cfg = tiny_cfg("plain")
    mmdet = ours_to_mmdet(perturbed_model(cfg).state_dict(), cfg)["state_dict"]
    mmdet["bbox_head.mask_head.weight"] = torch.zeros(1)
    with pytest.raises(UnknownKeysError, match="bbox_head.mask_head.weight"):
        to_ours(mmdet)
    with pytest.raises(ValueError, match="an MMDetection checkpoint has a 'state_dict' or 'model' state dict"):
        mmdet_to_ours({"meta": {}, "message_hub": {}})
