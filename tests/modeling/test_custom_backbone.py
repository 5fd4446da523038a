"""Training steps: a backbone registered from outside the package and chosen in YAML, and every shipped variant.

Each model takes two AdamW steps: the loss is finite, a gradient reaches every trainable
parameter (non-zero from the second step on: at the first, the official zero
initialisations of sampling_offsets and of the box heads' last layer still block
level_embed and the box heads' hidden layers), and frozen stages stay frozen.
"""
from pathlib import Path

import pytest
import torch
from torch import nn

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model
from ddetr_plugin.modeling.backbone import Backbone, ShapeSpec
from ddetr_plugin.registry import BACKBONE_REGISTRY

from ..checkpoint.helpers import run_single_threaded

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def single_thread():
    yield from run_single_threaded()


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


def batch():
    torch.manual_seed(1)
    return [
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[4.0, 8.0, 40.0, 60.0]]), "labels": torch.tensor([1])}},
        {"image": torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[0.0, 0.0, 30.0, 20.0], [30.0, 10.0, 60.0, 46.0]]),
                     "labels": torch.tensor([3, 0])}},
    ]


def train_two_steps(model: nn.Module) -> dict:
    """Two AdamW steps; returns the first step's losses after checking gradients and frozen parameters."""
    model.train()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    initial = {name: p.detach().clone() for name, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    for step in range(2):
        optimizer.zero_grad(set_to_none=True)
        losses = model(batch())
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
        for name, parameter in trainable.items():
            assert parameter.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(parameter.grad).all(), name
            assert step == 0 or parameter.grad.abs().sum() > 0, f"zero gradient on {name}"
        optimizer.step()
        if step == 0:
            first_losses = losses
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert parameter.grad is None and torch.equal(parameter, frozen[name]), f"frozen {name} changed"
        else:
            assert not torch.equal(parameter, initial[name]), f"{name} did not move"
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), f"buffer {name} changed (frozen batch norm)"
    return first_losses


def test_backbone_registered_outside_the_package_trains_from_yaml(tmp_path):
    (tmp_path / "tiny.yaml").write_text(
        "MODEL:\n"
        "  DEVICE: cpu\n"
        "  NUM_CLASSES: 4\n"
        "  NUM_QUERIES: 5\n"
        "  NUM_FEATURE_LEVELS: 3\n"
        "  BACKBONE:\n"
        "    NAME: TinyTestBackbone\n"
        "  POSITION_ENCODING:\n"
        "    NUM_POS_FEATS: 16\n"
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


SHRINK = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 4, "MODEL.NUM_QUERIES", 5,
    "MODEL.POSITION_ENCODING.NUM_POS_FEATS", 16, "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 2,
    "MODEL.TRANSFORMER.ENC_LAYERS", 1, "MODEL.TRANSFORMER.DEC_LAYERS", 1, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 32,
]


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
