"""Parameter groups of the AdamW optimizer: backbone and linear-projection multipliers, frozen parameters."""
import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.engine import build_optimizer, get_param_groups
from ddetr_plugin.modeling import build_model

from tests._support.fake_training import TinyDetector


def _groups_by_name(optimizer):
    return {group["name"]: group for group in optimizer.param_groups}


def test_groups_and_learning_rates():
    model = TinyDetector()
    model.backbone[0].bias.requires_grad_(False)  # frozen: left out
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 1e-3, "SOLVER.BACKBONE_LR_MULTIPLIER", 0.1,
                         "SOLVER.LINEAR_PROJ_LR_MULTIPLIER", 0.5, "SOLVER.WEIGHT_DECAY", 0.05])
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = _groups_by_name(optimizer)
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert groups["linear_proj"]["lr"] == pytest.approx(5e-4)
    assert groups["base"]["lr"] == pytest.approx(1e-3)
    assert all(group["weight_decay"] == pytest.approx(0.05) for group in groups.values())
    ids = {name: {id(p) for p in group["params"]} for name, group in groups.items()}
    assert ids["backbone"] == {id(model.backbone[0].weight)}
    assert ids["linear_proj"] == {id(p) for p in [*model.sampling_offsets.parameters(),
                                                  *model.reference_points.parameters()]}
    assert ids["base"] == {id(p) for p in model.class_embed.parameters()}
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_ddp_prefix_is_ignored_and_empty_groups_dropped():
    class Wrapper(torch.nn.Module):  # names like DDP's "module.backbone..."
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Module()
            self.module.backbone = torch.nn.Linear(2, 2)
            self.module.head = torch.nn.Linear(2, 2)

    groups = get_param_groups(Wrapper(), base_lr=1.0, weight_decay=0.0, backbone_lr_multiplier=0.25)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("base", 1.0, 2), ("backbone", 0.25, 2)]


def test_no_trainable_parameter_is_an_error():
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        build_optimizer(get_cfg(), model)


def test_real_model_groups_match_official_rules():
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 3, "MODEL.NUM_QUERIES", 5, "MODEL.BACKBONE.DEPTH", 18,
        "MODEL.TRANSFORMER.D_MODEL", 32,
        "MODEL.TRANSFORMER.NHEADS", 4, "MODEL.TRANSFORMER.ENC_LAYERS", 1, "MODEL.TRANSFORMER.DEC_LAYERS", 1,
        "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 32,
    ])
    model = build_model(cfg)
    groups = _groups_by_name(build_optimizer(cfg, model))
    names = {id(p): n for n, p in model.named_parameters()}
    backbone = {names[id(p)] for p in groups["backbone"]["params"]}
    linear = {names[id(p)] for p in groups["linear_proj"]["params"]}
    assert backbone == {n for n, p in model.backbone.named_parameters(prefix="backbone") if p.requires_grad}
    assert not any(n.startswith("backbone.body.layer1.") for n in backbone)  # frozen stage (official)
    assert linear and all("sampling_offsets" in n or "reference_points" in n for n in linear)
    assert "transformer.reference_points.weight" in linear
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    base = {names[id(p)] for p in groups["base"]["params"]}
    assert base | backbone | linear == trainable and not base & (backbone | linear)
