"""Training steps: a backbone registered from outside the package and chosen in YAML, and every shipped variant.

Each model takes two AdamW steps: the loss is finite, a gradient reaches every trainable
parameter (non-zero from the second step on: at the first, the official zero
initialisations of sampling_offsets and of the box heads' last layer still block
level_embed and the box heads' hidden layers), and frozen stages stay frozen.
"""
import pytest
import torch
from torch import nn

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model
from ddetr_plugin.modeling.backbone import Backbone, ShapeSpec
from ddetr_plugin.registry import BACKBONE_REGISTRY

from tests._support.paths import CONFIGS
from tests._support.tiny_configs import SHRINK
from tests._support.two_step_training import train_two_steps

pytestmark = pytest.mark.usefixtures("single_thread")


@BACKBONE_REGISTRY.register()
class TinyTestBackbone(Backbone):
    """Two strided convs: "s8" (stride 8) and "s16" (stride 16); the stem is frozen."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, kernel_size=8, stride=8)
        self.down = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1)
        self.stem.requires_grad_(False)
        self.channels = channels

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {"channels": cfg.MODEL.TRANSFORMER.D_MODEL // 2}

    def forward(self, images: torch.Tensor) -> dict:
        s8 = torch.relu(self.stem(images))
        return {"s8": s8, "s16": torch.relu(self.down(s8))}

    def output_shape(self) -> dict:
        return {"s8": ShapeSpec(self.channels, 8), "s16": ShapeSpec(2 * self.channels, 16)}


def test_backbone_registered_outside_the_package_trains_from_yaml(tmp_path):
    (tmp_path / "tiny.yaml").write_text(
        "MODEL:\n"
        "  DEVICE: cpu\n"
        "  NUM_CLASSES: 4\n"
        "  NUM_QUERIES: 5\n"
        "  NUM_FEATURE_LEVELS: 3\n"
        "  BACKBONE:\n"
        "    NAME: TinyTestBackbone\n"
        "  TRANSFORMER:\n"
        "    D_MODEL: 32\n"
        "    NHEADS: 2\n"
        "    ENC_LAYERS: 1\n"
        "    DEC_LAYERS: 2\n"
        "    DIM_FEEDFORWARD: 32\n"
    )
    model = build_model(load_config(str(tmp_path / "tiny.yaml")))
    assert isinstance(model.backbone, TinyTestBackbone)
    # two backbone levels (16 and 32 channels) plus one stride-2 level on the last
    assert [proj[0].in_channels for proj in model.input_proj] == [16, 32, 32]
    losses = train_two_steps(model)
    assert {"loss_ce", "loss_bbox", "loss_giou", "loss_ce_0"} <= set(losses)


@pytest.mark.parametrize("config", [
    "deformable_detr_r50", "deformable_detr_r50_single_scale", "deformable_detr_r50_single_scale_dc5",
    "deformable_detr_r50_box_refine", "deformable_detr_r50_two_stage",
])
def test_every_variant_trains_a_step_with_frozen_stages_frozen(config):
    # DC5 dilates a bottleneck ResNet, so it keeps ResNet-50; the others shrink to ResNet-18
    depth = [] if config.endswith("dc5") else ["MODEL.BACKBONE.DEPTH", 18]
    cfg = load_config(str(CONFIGS / f"{config}.yaml"), SHRINK + depth)
    torch.manual_seed(0)
    model = build_model(cfg)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    # the official trains layer2-layer4: the stem and layer1 are frozen, nothing else
    assert frozen and all(name.startswith(("backbone.body.conv1.", "backbone.body.layer1.")) for name in frozen)
    assert {name for name, _ in model.named_parameters() if name.startswith("backbone.body.layer1.")} <= frozen
    losses = train_two_steps(model)
    assert ("loss_ce_enc" in losses) == cfg.MODEL.TWO_STAGE
