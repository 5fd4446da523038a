"""Tiny models built from ``tiny_configs``, with weights moved off their initial values so that a swapped or
dropped tensor shows, and the comparison of two state dicts."""
from typing import Collection, Optional

import torch
from fvcore.common.config import CfgNode

from ddetr_plugin.modeling import build_model
from ddetr_plugin.modeling.meta_arch import DeformableDETR

from .tiny_configs import META_ARCH_TINY, merged_cfg, variants

META_ARCH_VARIANTS = variants("plain", "box_refine", "two_stage", "single_scale", "single_scale_dc5")
NUM_CLASSES, NUM_QUERIES, DEC_LAYERS = 5, 8, 2  # what META_ARCH_TINY sets


def perturb_weights(model: torch.nn.Module, names: Optional[Collection[str]] = None) -> torch.nn.Module:
    """``model`` in eval mode with every floating-point parameter and buffer (those in ``names`` if given)
    moved off its initial value: variances stay positive; draws from torch's global generator."""
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if (names is None or name in names) and tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) * 0.1 + 0.01 if "running_var" in name
                            else torch.randn_like(tensor) * 0.05)
    return model.eval()


def perturbed_model(cfg: CfgNode, seed: int = 0) -> torch.nn.Module:
    """The model of ``cfg`` with every saved parameter and buffer moved off its initial value (refined
    heads then differ; shared heads stay shared; pixel_mean/std, not saved, stay)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    return perturb_weights(model, set(model.state_dict()))


def tiny_model(variant: str, *extra) -> DeformableDETR:
    """The ``META_ARCH_TINY`` model of ``variant`` (a key of ``META_ARCH_VARIANTS``), initialised from seed 0."""
    cfg = merged_cfg(META_ARCH_TINY, META_ARCH_VARIANTS[variant], extra)
    torch.manual_seed(0)
    return build_model(cfg)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    """Same keys, and every tensor equal in shape, dtype and value."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key
