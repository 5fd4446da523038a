"""TimmBackbone: timm features_only models (a ResNet, ConvNeXt, Swin) as the detector's backbone.

Small timm models (resnet10t, convnext_atto, a one-block-per-stage Swin) keep this fast; the shipped
ConvNeXt-T and Swin-T configs are built once each at full size.
"""
import math
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model
from ddetr_plugin.modeling.backbone import TimmBackbone
from ddetr_plugin.modeling.backbone.timm_backbone import parse_model_kwargs

from tests._support.paths import CONFIGS
from tests._support.tiny_configs import SHRINK
from tests._support.two_step_training import train_two_steps

pytestmark = pytest.mark.usefixtures("single_thread")
requires_timm = pytest.mark.skipif(
    find_spec("timm") is None, reason="timm is not installed: pip install ddetr_plugin[timm]"
)
TINY_SWIN = {"dynamic_img_size": True, "depths": (1, 1, 1, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
# name, create_model kwargs, the names of its outputs at strides 8, 16, 32
FAMILIES = {
    "resnet": ("resnet10t", {}, ["layer2", "layer3", "layer4"]),
    "convnext": ("convnext_atto", {}, ["stages_1", "stages_2", "stages_3"]),
    "swin": ("swin_tiny_patch4_window7_224", TINY_SWIN, ["layers_1", "layers_2", "layers_3"]),
}


@requires_timm
@pytest.mark.parametrize("family", FAMILIES)
def test_output_shape_matches_the_features_of_an_odd_size_image(family):
    name, kwargs, names = FAMILIES[family]
    torch.manual_seed(0)
    backbone = TimmBackbone(name, model_kwargs=kwargs).eval()
    shape = backbone.output_shape()
    assert list(shape) == names and [spec.stride for spec in shape.values()] == [8, 16, 32]
    assert backbone.size_divisibility == 32
    images = torch.randn(1, 3, 67, 101)
    with torch.no_grad():
        features = backbone(images)
        # the same image already padded to the multiple of 32 (nothing more is padded inside)
        padded = backbone(F.pad(images, (0, 128 - 101, 0, 96 - 67)))
    assert list(features) == names
    for feature_name, spec in shape.items():
        feature = features[feature_name]
        # the size the detector's padding mask, interpolated from 67 x 101, assumes
        assert feature.shape == (1, spec.channels, math.ceil(67 / spec.stride), math.ceil(101 / spec.stride))
        assert feature.is_contiguous()
        torch.testing.assert_close(feature, padded[feature_name][..., : feature.shape[-2], : feature.shape[-1]])


def timm_detector(name: str, frozen_stages: int, *extra) -> torch.nn.Module:
    cfg = load_config(None, SHRINK + [
        "MODEL.NUM_FEATURE_LEVELS", 4, "MODEL.BACKBONE.NAME", "TimmBackbone", "MODEL.BACKBONE.TIMM.NAME", name,
        "MODEL.BACKBONE.TIMM.FROZEN_STAGES", frozen_stages, *extra,
    ])
    torch.manual_seed(0)
    return build_model(cfg)


@requires_timm
@pytest.mark.parametrize("family, frozen_stages, frozen_modules, kwargs", [
    # timm zero-initialises each block's last BN weight, which frozen BN would keep at zero (dead blocks)
    ("resnet", 2, ("backbone.body.conv1.", "backbone.body.layer1."), ["zero_init_last=False"]),
    ("convnext", 1, ("backbone.body.stem_", "backbone.body.stages_0."), []),
])
def test_detector_on_timm_backbone_trains_with_frozen_stages_frozen(family, frozen_stages, frozen_modules, kwargs):
    name, _, names = FAMILIES[family]
    model = timm_detector(name, frozen_stages, "MODEL.BACKBONE.TIMM.KWARGS", kwargs)
    assert model.in_features == names
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith(frozen_modules) for name in frozen)
    # every parameter of the frozen stages, and nothing after them
    assert {name for name, _ in model.named_parameters() if name.startswith(frozen_modules)} == frozen
    assert any(p.requires_grad for p in model.backbone.parameters())
    # finite losses, a gradient on every trainable parameter (the backbone's too), frozen ones unchanged
    train_two_steps(model)


@requires_timm
def test_frozen_stages_keep_their_batch_norm_statistics_with_trainable_batch_norm():
    torch.manual_seed(0)
    backbone = TimmBackbone("resnet10t", frozen_stages=2, freeze_bn=False).train()
    frozen_bn, trained_bn = backbone.body.layer1[0].bn1, backbone.body.layer2[0].bn1
    assert not frozen_bn.training and trained_bn.training and not backbone.body.conv1.training
    before = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(frozen_bn.running_mean, before[0])
    assert not torch.equal(trained_bn.running_mean, before[1])
    assert not frozen_bn.weight.requires_grad and trained_bn.weight.requires_grad


def save_weights(model: torch.nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)


def perturbed_timm_model(name: str, seed: int = 0) -> torch.nn.Module:
    """timm's full model (classifier included) with batch-norm statistics off their 0/1 initial values."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@requires_timm
@pytest.mark.parametrize("family, file_name", [("resnet", "weights.pth"), ("convnext", "model.safetensors")])
def test_local_weights_file_gives_the_features_of_timm_loading_it(family, file_name, tmp_path, caplog):
    import timm

    name, _, _ = FAMILIES[family]
    path = tmp_path / file_name
    save_weights(perturbed_timm_model(name), path)
    # timm's own loader of a local file as the reference (pretrained_cfg_overlay file: nothing downloaded)
    reference = timm.create_model(name, features_only=True, out_indices=(-3, -2, -1), pretrained=True,
                                  pretrained_cfg_overlay={"file": str(path)}).eval()
    torch.manual_seed(1)  # another initialisation: only the file makes the two agree
    with caplog.at_level("INFO", logger="ddetr_plugin.modeling.backbone.timm_backbone"):
        backbone = TimmBackbone(name, pretrained=str(path)).eval()  # BatchNorm frozen after loading
    assert f"{path}: " in caplog.text and ("fc (2)" in caplog.text or "head" in caplog.text)  # the classifier
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for feature, expected in zip(backbone(images).values(), reference(images), strict=True):
            torch.testing.assert_close(feature, expected, rtol=1e-4, atol=1e-5)


@requires_timm
def test_missing_weights_are_logged_by_name(tmp_path, caplog):
    state_dict = perturbed_timm_model("resnet10t").state_dict()
    del state_dict["layer3.0.conv1.weight"]
    torch.save(state_dict, tmp_path / "partial.pth")
    with caplog.at_level("WARNING", logger="ddetr_plugin.modeling.backbone.weights"):
        TimmBackbone("resnet10t", pretrained=str(tmp_path / "partial.pth"))
    assert "partial.pth lack: layer3.0.conv1.weight" in caplog.text


@requires_timm
def test_weights_of_another_model_are_a_clear_error(tmp_path):
    save_weights(perturbed_timm_model("convnext_atto"), tmp_path / "convnext_atto.pth")
    save_weights(perturbed_timm_model("convnext_femto"), tmp_path / "convnext_femto.pth")
    with pytest.raises(ValueError, match=r"none of the \d+ tensors in .*convnext_atto.pth belongs to timm model "
                                         r"'resnet10t'"):
        TimmBackbone("resnet10t", pretrained=str(tmp_path / "convnext_atto.pth"))
    # same names, other widths
    with pytest.raises(RuntimeError, match=r"weights in .*convnext_femto.pth do not fit timm model 'convnext_atto'"):
        TimmBackbone("convnext_atto", pretrained=str(tmp_path / "convnext_femto.pth"))
    with pytest.raises(FileNotFoundError, match=r"TimmBackbone: pretrained weights not found: .*absent.pth"):
        TimmBackbone("resnet10t", pretrained=str(tmp_path / "absent.pth"))


@requires_timm
@pytest.mark.parametrize("kwargs, error", [
    ({"name": "convnxt_atto"}, r"'convnxt_atto' is not a timm model name .*similar: convnext_atto"),
    ({"name": "hf-hub:timm/resnet18.a1_in1k"}, r"'hf-hub:timm/resnet18.a1_in1k' is not a timm model name"),
    ({"name": "convnext_atto", "out_indices": (3, 2)}, r"OUT_INDICES must be increasing .* got \[3, 2\]"),
    ({"name": "convnext_atto", "out_indices": (1, 5)}, r"timm cannot build 'convnext_atto' .*out_indices=\(1, 5\)"),
    ({"name": "convnext_atto", "out_indices": (1, 2), "frozen_stages": 4}, r"FROZEN_STAGES must be 0 to 3 .* got 4"),
    ({"name": "swin_tiny_patch4_window7_224", "model_kwargs": {**TINY_SWIN, "dynamic_img_size": False}},
     r"takes only 224x224 images.*add 'dynamic_img_size=True' to MODEL.BACKBONE.TIMM.KWARGS"),
])
def test_bad_arguments_are_clear_errors(kwargs, error):
    with pytest.raises(ValueError, match=error):
        TimmBackbone(**kwargs)


def test_model_kwargs_are_python_literals_or_strings():
    assert parse_model_kwargs(["dynamic_img_size=True", "depths=(1, 1, 3, 1)", " act_layer = gelu"]) == {
        "dynamic_img_size": True, "depths": (1, 1, 3, 1), "act_layer": "gelu",
    }
    with pytest.raises(ValueError, match=r"MODEL.BACKBONE.TIMM.KWARGS: each entry must be 'name=value', got 'True'"):
        parse_model_kwargs(["True"])


def test_missing_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ImportError, match=r"TimmBackbone needs timm .*pip install ddetr_plugin\[timm\]"):
        TimmBackbone("resnet10t")


def test_package_imports_and_registers_timm_backbone_without_timm():
    code = (
        "import sys\n"
        "sys.modules['timm'] = None\n"  # makes `import timm` fail
        "import ddetr_plugin.modeling\n"
        "from ddetr_plugin.registry import BACKBONE_REGISTRY\n"
        "assert 'TimmBackbone' in BACKBONE_REGISTRY\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@requires_timm
@pytest.mark.parametrize("config, names, frozen_modules", [
    ("deformable_detr_convnext_tiny", ["stages_1", "stages_2", "stages_3"], ("body.stem_", "body.stages_0.")),
    ("deformable_detr_swin_tiny", ["layers_1", "layers_2", "layers_3"], ("body.patch_embed.", "body.layers_0.")),
])
def test_shipped_timm_configs_build_a_detector_that_runs(config, names, frozen_modules):
    # the full-size backbone under a small transformer
    cfg = load_config(str(CONFIGS / f"{config}.yaml"), SHRINK)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.backbone.output_shape() == dict(zip(names, [(192, 8), (384, 16), (768, 32)]))
    frozen = {name for name, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.backbone.named_parameters() if name.startswith(frozen_modules)}
    with torch.no_grad():
        detections = model([{"image": torch.randint(0, 256, (3, 75, 90), dtype=torch.uint8)}])
    boxes = detections[0]["boxes"]
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0 and torch.isfinite(boxes).all()
