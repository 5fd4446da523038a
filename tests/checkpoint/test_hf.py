"""HF transformers checkpoints to ours and back, without transformers itself (test_hf_parity.py runs it)."""
import json
import re

import pytest
import torch

from ddetr_plugin.checkpoint.hf import hf_to_ours, load_hf_directory, ours_to_hf, save_hf_directory
from ddetr_plugin.checkpoint.variant import ModelVariant
from ddetr_plugin.modeling import build_model

from tests._support.tiny_configs import tiny_cfg
from tests._support.tiny_models import assert_same_tensors, perturbed_model

pytest.importorskip("safetensors")

HF_VARIANTS = ["plain", "box_refine", "two_stage", "single_scale_learned"]


@pytest.mark.parametrize("variant", HF_VARIANTS)
def test_ours_to_hf_and_back_is_exact(tmp_path, variant):
    cfg = tiny_cfg(variant)
    state = perturbed_model(cfg).state_dict()
    save_hf_directory(str(tmp_path), *ours_to_hf(state, cfg))
    back = load_hf_directory(str(tmp_path))
    assert_same_tensors(back.state_dict, state)
    assert back.variant == ModelVariant.from_config(cfg)


def test_hf_names_and_config():
    cfg = tiny_cfg("two_stage", "MODEL.MATCHER.COST_CLASS", 1.0, "MODEL.CRITERION.LOSS_BBOX_WEIGHT", 2.5)
    state = perturbed_model(cfg).state_dict()
    hf, config = ours_to_hf(state, cfg)
    q, k, v = (hf[f"model.decoder.layers.1.self_attn.{name}_proj.weight"] for name in "qkv")
    assert torch.equal(torch.cat([q, k, v]), state["transformer.decoder.layers.1.self_attn.in_proj_weight"])
    assert torch.equal(hf["model.decoder.layers.0.encoder_attn_layer_norm.weight"],
                       state["transformer.decoder.layers.0.norm1.weight"])
    assert torch.equal(hf["model.decoder.layers.0.self_attn_layer_norm.weight"],
                       state["transformer.decoder.layers.0.norm2.weight"])
    assert torch.equal(hf["model.encoder.layers.0.final_layer_norm.bias"],
                       state["transformer.encoder.layers.0.norm2.bias"])
    assert torch.equal(hf["model.backbone.model.layer2.0.downsample.1.running_var"],
                       state["backbone.body.layer2.0.downsample.1.running_var"])
    # two-stage: the decoder's references to every head, including the encoder's (index 2)
    assert torch.equal(hf["model.decoder.class_embed.2.weight"], state["class_embed.2.weight"])
    assert torch.equal(hf["model.decoder.bbox_embed.2.layers.2.bias"], state["bbox_embed.2.layers.2.bias"])
    assert config["backbone_config"]["backbone"] == "resnet18" and config["backbone_config"]["out_indices"] == [2, 3, 4]
    assert (config["class_cost"], config["bbox_loss_coefficient"]) == (1, 2.5)
    assert isinstance(config["class_cost"], int)  # transformers 5 validates these as int
    assert (config["two_stage_num_proposals"], config["encoder_n_points"], config["decoder_n_points"]) == (6, 2, 3)
    assert len(config["id2label"]) == 5


def test_hf_training_settings_become_config_values():
    cfg = tiny_cfg("plain")
    hf, config = ours_to_hf(perturbed_model(cfg).state_dict(), cfg)
    config.update(class_cost=1, bbox_cost=3, giou_cost=4, giou_loss_coefficient=7, auxiliary_loss=False,
                  dropout=0.2, focal_alpha=0.3)
    values = hf_to_ours(hf, config).config_values
    assert values["MODEL.MATCHER.COST_CLASS"] == 1.0 and isinstance(values["MODEL.MATCHER.COST_CLASS"], float)
    assert (values["MODEL.MATCHER.COST_BBOX"], values["MODEL.MATCHER.COST_GIOU"]) == (3.0, 4.0)
    assert values["MODEL.CRITERION.LOSS_CLASS_WEIGHT"] == 1.0  # HF's fixed weight (official: 2)
    assert values["MODEL.CRITERION.LOSS_GIOU_WEIGHT"] == 7.0
    assert values["MODEL.CRITERION.ENC_LOSS"] is False and values["MODEL.AUX_LOSS"] is False
    assert (values["MODEL.TRANSFORMER.DROPOUT"], values["MODEL.CRITERION.FOCAL_ALPHA"]) == (0.2, 0.3)


def test_transformers_4_names_and_config_are_read():
    cfg = tiny_cfg("box_refine")
    state = perturbed_model(cfg).state_dict()
    hf, config = ours_to_hf(state, cfg)
    legacy_names = [("model.backbone.model.", "model.backbone.conv_encoder.model."),
                    ("self_attn.o_proj", "self_attn.out_proj"), (".mlp.fc", ".fc")]
    legacy = {}
    for key, value in hf.items():
        for new, old in legacy_names:
            key = key.replace(new, old)
        legacy[key] = value
    assert "model.decoder.layers.0.fc1.weight" in legacy
    legacy_config = {key: value for key, value in config.items() if key != "backbone_config"}
    legacy_config.update(backbone="resnet18", use_timm_backbone=True)
    assert_same_tensors(hf_to_ours(legacy, legacy_config).state_dict, state)


def test_tied_heads_saved_once_are_copied_to_every_layer():
    cfg = tiny_cfg("plain")
    state = perturbed_model(cfg).state_dict()
    hf, config = ours_to_hf(state, cfg)
    assert config["tie_word_embeddings"] is True
    saved_once = {key: value for key, value in hf.items() if not re.match(r"(class|bbox)_embed\.[1-9]", key)}
    assert_same_tensors(hf_to_ours(saved_once, config).state_dict, state)
    with pytest.raises(ValueError, match="class_embed.1 is missing and config.json has tie_word_embeddings false"):
        hf_to_ours(saved_once, {**config, "tie_word_embeddings": False})


def test_refined_class_heads_that_differ_are_not_tied():
    # transformers 5 ties class heads across layers unless told not to
    cfg = tiny_cfg("box_refine")
    model = perturbed_model(cfg)
    assert not torch.equal(model.class_embed[0].weight, model.class_embed[1].weight)
    assert ours_to_hf(model.state_dict(), cfg)[1]["tie_word_embeddings"] is False
    fresh = build_model(cfg).state_dict()  # refined heads start as copies of one another
    assert ours_to_hf(fresh, cfg)[1]["tie_word_embeddings"] is True


def test_what_hf_cannot_hold_is_refused():
    cfg = tiny_cfg("two_stage_shared_heads")
    with pytest.raises(ValueError, match="two-stage only with box refinement"):
        ours_to_hf(build_model(cfg).state_dict(), cfg)
    cfg = tiny_cfg("plain", "MODEL.POSITION_ENCODING.TEMPERATURE", 20)
    with pytest.raises(ValueError, match="TEMPERATURE is 20"):
        ours_to_hf(build_model(cfg).state_dict(), cfg)


def test_other_backbones_and_models_are_refused(tmp_path):
    cfg = tiny_cfg("plain")
    hf, config = ours_to_hf(build_model(cfg).state_dict(), cfg)
    with pytest.raises(ValueError, match="resnet backbone 'microsoft/resnet-50'; only timm ResNets"):
        hf_to_ours(hf, {**config, "backbone_config": {"model_type": "resnet", "backbone": "microsoft/resnet-50"}})
    with pytest.raises(ValueError, match="model_type 'detr'"):
        hf_to_ours(hf, {**config, "model_type": "detr"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_hf_directory(str(tmp_path))


def test_id2label_decides_the_label_space_of_91_classes():
    cfg = tiny_cfg("plain", "MODEL.NUM_CLASSES", 91)
    hf, config = ours_to_hf(build_model(cfg).state_dict(), cfg)
    # the hub's COCO configs: label = COCO id, unused ids (0, 12, 26, ...) named "N/A"
    coco = {str(i): "N/A" if i in (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83) else f"thing{i}" for i in range(91)}
    coco["1"] = "person"
    converted = hf_to_ours(hf, {**config, "id2label": coco})
    assert converted.config_values["MODEL.LABEL_SPACE"] == "category_id"
    assert "id2label names COCO ids" in converted.notes[0]
    contiguous = {str(i): "person" if i == 0 else f"thing{i}" for i in range(91)}
    converted = hf_to_ours(hf, {**config, "id2label": contiguous})
    assert converted.config_values["MODEL.LABEL_SPACE"] == "contiguous"
    assert "label 0 'person'" in converted.notes[0]
