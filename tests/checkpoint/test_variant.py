"""Reading the variant off a state dict, and writing the config that builds it."""
import pytest
import torch
import yaml

from ddetr_plugin.checkpoint.variant import ModelVariant, _backbone_out_features, infer_label_space, variant_of_weights
from ddetr_plugin.config import get_cfg, load_config
from ddetr_plugin.config.dotted import config_with, write_config
from ddetr_plugin.modeling import build_model
from ddetr_plugin.modeling.backbone.resnet import RESNET_LAYOUTS, STAGES, ResNetBackbone, resnet_layout_of

from tests._support.tiny_configs import VARIANTS, tiny_cfg


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_weights_show_what_the_config_built(variant):
    cfg = tiny_cfg(variant)
    expected = ModelVariant.from_config(cfg)
    state = build_model(cfg).state_dict()
    found = ModelVariant.from_state_dict(state, nheads=2, with_box_refine=expected.with_box_refine,
                                         dilation=False, num_queries=6)
    assert found == expected
    assert (found.enc_n_points, found.dec_n_points, found.num_classes) == (2, 3, 5)


def fake_resnet(blocks, bottleneck, out_channels):
    """A state dict with only the keys that show a ResNet's blocks and the input projections' channels."""
    state = {"transformer.level_embed": torch.zeros(len(out_channels), 32)}
    for stage, count in zip(STAGES, blocks):
        for block in range(count):
            state[f"backbone.body.{stage}.{block}.conv1.weight"] = torch.zeros(1)
            if bottleneck:
                state[f"backbone.body.{stage}.{block}.conv3.weight"] = torch.zeros(1)
    for level, channels in enumerate(out_channels):
        state[f"input_proj.{level}.0.weight"] = torch.zeros(32, channels, 1, 1)
    return state


def test_backbone_depth_and_stages_from_block_counts_and_channels():
    def layout(state):
        return resnet_layout_of(key[len("backbone.body."):] for key in state)

    assert layout(fake_resnet((3, 4, 23, 3), True, [])) == RESNET_LAYOUTS[101]
    assert layout(fake_resnet((3, 4, 6, 3), False, [])).depth == 34
    assert layout(fake_resnet((3, 4, 6, 3), True, [])).depth == 50
    assert _backbone_out_features(fake_resnet((), True, [1024, 2048]), 2, RESNET_LAYOUTS[50]) == ("layer3", "layer4")
    assert _backbone_out_features(fake_resnet((), False, [512]), 1, RESNET_LAYOUTS[18]) == ("layer4",)
    with pytest.raises(ValueError, match=r"\(3, 5, 6, 3\) bottleneck blocks per stage"):
        layout(fake_resnet((3, 5, 6, 3), True, []))
    with pytest.raises(ValueError, match="input_proj.0 reads 1000 channels"):
        _backbone_out_features(fake_resnet((), True, [1000]), 1, RESNET_LAYOUTS[50])
    gap = {k: v for k, v in fake_resnet((2, 2, 2, 2), False, []).items() if ".layer2.0." not in k}
    with pytest.raises(ValueError, match=r"stage layer2 has blocks \[1\]; expected 0..0"):
        layout(gap)


@pytest.mark.parametrize("depth", sorted(RESNET_LAYOUTS))
def test_the_layout_table_is_the_backbone_the_model_builds(depth):
    with torch.device("meta"):  # shapes and names only
        backbone = ResNetBackbone(depth=depth, out_features=list(STAGES))
    assert resnet_layout_of(backbone.body.state_dict()) == RESNET_LAYOUTS[depth]
    assert RESNET_LAYOUTS[depth].stage_channels() == {
        stage: spec.channels for stage, spec in backbone.output_shape().items()}


def test_heads_the_shapes_cannot_split_are_an_error():
    state = build_model(tiny_cfg("plain")).state_dict()
    # 2 heads x 4 levels x 2 points x 2 = 32 rows; 3 heads do not divide them
    with pytest.raises(ValueError, match="sampling_offsets has 32 rows.*wrong number of heads"):
        ModelVariant.from_state_dict(state, nheads=3, with_box_refine=False, dilation=False)
    two_stage = build_model(tiny_cfg("two_stage")).state_dict()
    with pytest.raises(ValueError, match="does not show its number of queries"):
        ModelVariant.from_state_dict(two_stage, nheads=2, with_box_refine=True, dilation=False)


def test_weights_of_another_model_name_the_config_keys():
    state = build_model(tiny_cfg("plain")).state_dict()
    cfg = tiny_cfg("plain", "MODEL.NUM_CLASSES", 9, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 64)
    with pytest.raises(ValueError, match="MODEL.NUM_CLASSES is 9 in the config but 5 in the weights.*"
                                         "MODEL.TRANSFORMER.DIM_FEEDFORWARD is 64 in the config but 48"):
        variant_of_weights(state, cfg)


def test_claims_that_contradict_the_weights_are_an_error():
    variant = ModelVariant.from_config(tiny_cfg("plain"))
    variant.check_claims({"d_model": 32, "nheads": None}, "args")
    with pytest.raises(ValueError, match="d_model: 256 in args, 32 in the weights"):
        variant.check_claims({"d_model": 256}, "args")


def test_written_config_holds_only_what_differs_and_reads_back(tmp_path):
    values = {**ModelVariant.from_config(tiny_cfg("two_stage")).config_values(),
              "MODEL.MATCHER.COST_CLASS": 1, "MODEL.CRITERION.ENC_LOSS": False, "MODEL.WEIGHTS": "/w/model.pth"}
    path = tmp_path / "out" / "model.yaml"
    write_config(str(path), values, header="converted\nfrom somewhere")
    text = path.read_text()
    assert text.startswith("# converted\n# from somewhere\n")
    written = yaml.safe_load(text)
    assert written["MODEL"]["MATCHER"] == {"COST_CLASS": 1.0}  # an int cost written as the float key
    assert "FOCAL_ALPHA" not in written["MODEL"]["CRITERION"] and "NAME" not in written["MODEL"]["BACKBONE"]
    cfg = load_config(str(path))
    assert ModelVariant.from_config(cfg) == ModelVariant.from_config(tiny_cfg("two_stage"))
    assert cfg.MODEL.WEIGHTS == "/w/model.pth" and cfg.MODEL.CRITERION.ENC_LOSS is False
    assert config_with(values).MODEL.MATCHER.COST_CLASS == 1.0
    with pytest.raises(KeyError, match="'MODEL.NO_SUCH_KEY' is not a config key"):
        write_config(str(path), {"MODEL.NO_SUCH_KEY": 1})


def test_the_defaults_describe_the_official_model():
    variant = ModelVariant.from_config(get_cfg())
    assert variant.describe() == ("plain, ResNet-50, 4 level(s), 91 classes, 300 queries, d_model 256, 6+6 layers")
    assert variant.num_heads_per_kind == 6


COCO_ID2LABEL = {"0": "N/A", "1": "person", "2": "bicycle", "11": "fire hydrant", "12": "N/A", "13": "stop sign"}


@pytest.mark.parametrize("num_classes, id2label, expected", [
    (91, None, "category_id"),  # the official and HF COCO head
    (91, {str(i): f"LABEL_{i}" for i in range(91)}, "category_id"),  # generic names show nothing either way
    (91, COCO_ID2LABEL, "category_id"),
    (91, {"0": "person", "1": "bicycle"}, "contiguous"),  # a 91-class model with contiguous labels
    (5, None, "contiguous"),
    (80, {"0": "person"}, "contiguous"),
])
def test_label_space_of_converted_weights(num_classes, id2label, expected):
    space, note = infer_label_space(num_classes, id2label)
    assert space == expected
    if num_classes == 91:  # the choice is explained, with how to override it
        other = "contiguous" if expected == "category_id" else "category_id"
        assert note.startswith(f"MODEL.LABEL_SPACE {expected} (") and f"set MODEL.LABEL_SPACE {other}" in note
    else:
        assert note is None
    if id2label is COCO_ID2LABEL:
        assert "id2label names COCO ids" in note
