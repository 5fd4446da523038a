"""ResNetBackbone: shapes and strides, DC5, freezing, norms, checkpoint names and loading torchvision weights."""
import logging
import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.backbone import ResNetBackbone, ShapeSpec
from ddetr_plugin.registry import BACKBONE_REGISTRY, build

ALL_STAGES = ["layer1", "layer2", "layer3", "layer4"]


def expected_shape(depth: int, dilation: bool = False) -> dict[str, ShapeSpec]:
    width = 1 if depth < 50 else 4  # BasicBlock vs Bottleneck expansion
    return {
        "layer1": ShapeSpec(64 * width, 4),
        "layer2": ShapeSpec(128 * width, 8),
        "layer3": ShapeSpec(256 * width, 16),
        "layer4": ShapeSpec(512 * width, 16 if dilation else 32),
    }


@pytest.mark.parametrize("depth, dilation", [(18, False), (50, False), (50, True)])
def test_features_match_output_shape(depth, dilation):
    backbone = ResNetBackbone(depth=depth, out_features=ALL_STAGES, dilation=dilation).eval()
    assert backbone.output_shape() == expected_shape(depth, dilation)
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96))
    assert list(features) == ALL_STAGES
    for name, spec in backbone.output_shape().items():
        assert features[name].shape == (1, spec.channels, math.ceil(64 / spec.stride), math.ceil(96 / spec.stride))


def test_odd_input_size_rounds_up():
    backbone = ResNetBackbone(depth=18, out_features=["layer4"]).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 65, 33))["layer4"].shape == (1, 512, 3, 2)


def test_dilation_needs_a_bottleneck_resnet():
    with pytest.raises(ValueError, match="dilation.*depth 18"):
        ResNetBackbone(depth=18, dilation=True)


def test_only_stages_up_to_the_deepest_output_are_built():
    backbone = ResNetBackbone(depth=18, out_features=["layer2"], train_layers=["layer2"])
    assert list(backbone.body) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
    assert backbone.output_shape() == {"layer2": ShapeSpec(128, 8)}


def test_state_dict_names_are_torchvision_names_under_body():
    backbone = ResNetBackbone(depth=50)
    reference = torchvision.models.resnet50(weights=None).state_dict()
    expected = {f"body.{k}" for k in reference if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    assert set(backbone.state_dict()) == expected
    assert len(expected) == 265  # the official backbone.0.body.* key count for R50


def test_frozen_and_trainable_parameters():
    backbone = ResNetBackbone(depth=18, norm="BN", train_layers=["layer3", "layer4"], out_features=ALL_STAGES)
    for name, parameter in backbone.named_parameters():
        trainable = name.startswith(("body.layer3.", "body.layer4."))
        assert parameter.requires_grad == trainable, name
    assert any(name.startswith("body.bn1.") for name, _ in backbone.named_parameters())


def test_frozen_bn_has_no_parameters():
    backbone = ResNetBackbone(depth=18, norm="FrozenBN", train_layers=ALL_STAGES)
    assert all("bn" not in name and "downsample.1" not in name for name, _ in backbone.named_parameters())
    assert all(p.requires_grad == (not n.startswith("body.conv1")) for n, p in backbone.named_parameters())


@pytest.mark.parametrize(
    "norm, norm_type", [("FrozenBN", FrozenBatchNorm2d), ("BN", nn.BatchNorm2d), ("SyncBN", nn.SyncBatchNorm),
                        ("GN", nn.GroupNorm)]
)
def test_norm_types(norm, norm_type):
    backbone = ResNetBackbone(depth=18, norm=norm, out_features=["layer2"], train_layers=["layer2"])
    assert isinstance(backbone.body.bn1, norm_type)
    assert isinstance(backbone.body.layer2[0].downsample[1], norm_type)
    if norm == "GN":
        assert backbone.body.bn1.num_groups == 32
    features = backbone.eval()(torch.randn(1, 3, 32, 32))
    assert features["layer2"].shape == (1, 128, 4, 4)


def test_residual_bn_is_not_zero_initialised():
    backbone = ResNetBackbone(depth=18, norm="BN")
    assert torch.all(backbone.body.layer1[0].bn2.weight == 1)


def randomized_resnet18() -> nn.Module:
    """A torchvision ResNet-18 whose BN statistics and affine terms are not the trivial defaults."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    for module in resnet.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return resnet.eval()


@pytest.fixture(scope="module")
def resnet18_and_file(tmp_path_factory):
    """A randomized torchvision ResNet-18 and the path of its saved state dict."""
    resnet = randomized_resnet18()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    return resnet, str(path)


def torchvision_stages(resnet: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(images))))
    outputs = {}
    for name in ALL_STAGES:
        x = getattr(resnet, name)(x)
        outputs[name] = x
    return outputs


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_torchvision_weights_give_identical_outputs(resnet18_and_file, norm):
    resnet, path = resnet18_and_file
    backbone = ResNetBackbone(depth=18, norm=norm, out_features=ALL_STAGES, pretrained=path).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = torchvision_stages(resnet, images)
        features = backbone(images)
    for name in ALL_STAGES:
        torch.testing.assert_close(features[name], expected[name], rtol=1e-5, atol=1e-5)


def test_wrapped_state_dict_and_skipped_stages(tmp_path):
    resnet = randomized_resnet18()
    path = tmp_path / "wrapped.pth"
    torch.save({"model": resnet.state_dict()}, path)
    backbone = ResNetBackbone(depth=18, out_features=["layer3"], train_layers=["layer3"])
    missing, unexpected = backbone.load_pretrained(str(path))
    assert missing == [] and unexpected == []  # fc and the unbuilt layer4 are skipped, not reported
    torch.testing.assert_close(backbone.body.layer3[1].conv2.weight, resnet.layer3[1].conv2.weight)


def test_missing_and_unexpected_keys_are_reported_by_name(tmp_path, caplog):
    state_dict = randomized_resnet18().state_dict()
    del state_dict["layer2.0.conv1.weight"]
    state_dict["layer2.0.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state_dict, path)
    backbone = ResNetBackbone(depth=18, out_features=ALL_STAGES)
    with caplog.at_level(logging.WARNING):
        missing, unexpected = backbone.load_pretrained(str(path))
    assert missing == ["layer2.0.conv1.weight"] and unexpected == ["layer2.0.extra.weight"]
    assert "layer2.0.conv1.weight" in caplog.text and "layer2.0.extra.weight" in caplog.text


def test_weights_of_another_depth_are_refused_with_the_file_name(resnet18_and_file):
    _, path = resnet18_and_file
    with pytest.raises(RuntimeError, match=r"resnet18\.pth do not fit ResNet-50") as info:
        ResNetBackbone(depth=50, out_features=["layer1"], train_layers=["layer1"], pretrained=path)
    assert "size mismatch for layer1.0.conv1.weight" in str(info.value)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        ResNetBackbone(depth=18, pretrained=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 42}, "depth must be one of"),
        ({"norm": "LN"}, "norm must be one of"),
        ({"out_features": ["res5"]}, "out_features"),
        ({"out_features": []}, "out_features"),
        ({"train_layers": ["layer5"]}, r"train_layers \['layer5'\]"),
        ({"out_features": ["layer2"], "train_layers": ["layer4"]}, r"train_layers \['layer4'\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetBackbone(**{"depth": 18, **kwargs})


def test_built_from_config_through_the_registry():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.OUT_FEATURES = ["layer4"]
    backbone = build(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, cfg)
    assert isinstance(backbone, ResNetBackbone)
    assert backbone.output_shape() == {"layer4": ShapeSpec(512, 32)}
    trainable = {name.split(".")[1] for name, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}


def test_channels_last_inference_gives_the_training_layout_features():
    # the CPU fast path runs inference channels-last inside (faster convolutions); the features are the
    # same and contiguous
    torch.manual_seed(0)
    backbone = ResNetBackbone(depth=50, out_features=["layer2", "layer3", "layer4"]).eval()
    assert not backbone.channels_last_inference  # plain NCHW unless a detector turns the fast paths on
    backbone.channels_last_inference = True
    layouts = []
    backbone.body.layer1.register_forward_pre_hook(
        lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    images = torch.randn(1, 3, 70, 90)
    trained_path = backbone(images)  # autograd on: contiguous layout throughout
    with torch.no_grad():
        inference_path = backbone(images)
    assert layouts == [False, True]
    for name, feature in inference_path.items():
        assert feature.is_contiguous(), name
        expected = trained_path[name].detach()
        # only the convolutions' summation order differs: relative to the feature's scale
        assert (feature - expected).abs().max() <= 1e-5 * expected.abs().max(), name
