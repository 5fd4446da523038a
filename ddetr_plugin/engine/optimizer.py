"""AdamW with the official Deformable DETR parameter groups.

Three groups, as the official main.py builds them: the backbone at
``base_lr * backbone_lr_multiplier``; parameters whose name contains
"sampling_offsets" or "reference_points" at ``base_lr * linear_proj_lr_multiplier``
(their small learning rate keeps the sampling locations stable early on); the
rest at ``base_lr``. Every group has the same weight decay; frozen parameters
(``requires_grad=False``) are left out.
"""
from typing import Dict, List, Sequence

import torch
from torch import nn

LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def get_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    backbone_lr_multiplier: float = 0.1,
    linear_proj_lr_multiplier: float = 0.1,
    backbone_prefix: str = "backbone.",
    linear_proj_names: Sequence[str] = LINEAR_PROJ_NAMES,
) -> List[Dict]:
    """Parameter groups for ``torch.optim`` (empty groups are dropped).

    Args:
        model: the detector (a DDP wrapper's "module." prefix is ignored).
        backbone_prefix: parameters whose name starts with it form the backbone group.
        linear_proj_names: parameters whose name contains one of these form the linear-projection group.

    Returns:
        dicts with "params", "lr", "weight_decay" and "name" ("base", "backbone", "linear_proj");
        the name is for logs and tests, torch ignores it.
    """
    groups: Dict[str, List[nn.Parameter]] = {"base": [], "backbone": [], "linear_proj": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        name = name.removeprefix("module.")
        if name.startswith(backbone_prefix):
            groups["backbone"].append(parameter)
        elif any(keyword in name for keyword in linear_proj_names):
            groups["linear_proj"].append(parameter)
        else:
            groups["base"].append(parameter)
    lrs = {
        "base": base_lr,
        "backbone": base_lr * backbone_lr_multiplier,
        "linear_proj": base_lr * linear_proj_lr_multiplier,
    }
    return [
        {"params": params, "lr": lrs[name], "weight_decay": weight_decay, "name": name}
        for name, params in groups.items()
        if params
    ]


def build_optimizer(cfg, model: nn.Module, optimizer_cls: type = torch.optim.AdamW) -> torch.optim.Optimizer:
    """AdamW (or a subclass: ``optimizer_cls``) over :func:`get_param_groups` from SOLVER.BASE_LR,
    WEIGHT_DECAY, BETAS and the lr multipliers."""
    groups = get_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        backbone_lr_multiplier=cfg.SOLVER.BACKBONE_LR_MULTIPLIER,
        linear_proj_lr_multiplier=cfg.SOLVER.LINEAR_PROJ_LR_MULTIPLIER,
    )
    if not groups:
        raise ValueError("build_optimizer: the model has no parameter with requires_grad=True to train")
    # The fused kernel updates every tensor in one pass; the default per-parameter loop
    # allocates temporaries for each of the ~200 parameters (a sizeable part of a CPU step).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    return optimizer_cls(
        groups,
        lr=cfg.SOLVER.BASE_LR,
        betas=tuple(cfg.SOLVER.BETAS),
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        fused=fused or None,
    )
