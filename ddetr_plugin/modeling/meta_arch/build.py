"""``build_model(cfg)``: the meta-architecture named by MODEL.META_ARCHITECTURE.

The class is looked up in ``META_ARCH_REGISTRY`` and built as every registered
component is, ``cls(**cls.from_config(cfg))``; the model is then moved to
MODEL.DEVICE. Weights (MODEL.WEIGHTS) are loaded by the caller (a Checkpointer).
"""
import torch
from torch import nn

from ddetr_plugin.registry import build_from_key


def build_model(cfg) -> nn.Module:
    """The detector described by ``cfg``, on ``cfg.MODEL.DEVICE``."""
    model = build_from_key("MODEL.META_ARCHITECTURE", cfg)
    return model.to(torch.device(cfg.MODEL.DEVICE))
