"""The CPU fast paths of a detector, behind one switch.

The model code is plain PyTorch (``nn.Linear``, ``nn.Dropout``, NCHW convolutions). Three
optimisations of the CPU float32 path are turned on here, on a built detector:

- every ``nn.Linear`` outside the backbone runs ``ddetr_plugin.ops.linear`` (oneDNN's inner product);
- every ``nn.Dropout`` outside the backbone runs ``ddetr_plugin.ops.dropout`` (the seeded dropout op);
- a backbone that declares ``channels_last_inference`` runs its CPU inference in channels-last layout.

Off, the model runs torch's own kernels: outputs agree to float32 rounding, and the dropout masks
differ (same distribution). ``DeformableDETR(cpu_fast_paths=...)`` (``MODEL.CPU_FAST_PATHS``)
chooses; the environment variable ``DDETR_CPU_FAST_PATHS=0`` forces them off whatever the config says.
"""
import os

import torch
from torch import nn

from ddetr_plugin.ops import dropout, linear

ENV_VAR = "DDETR_CPU_FAST_PATHS"
_OFF_VALUES = ("0", "false", "off", "no")


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and initialisation) on ``ddetr_plugin.ops.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        return linear(x, self.weight, self.bias)


class FastDropout(nn.Dropout):
    """``nn.Dropout(p)`` (no state; not in place) on ``ddetr_plugin.ops.dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any shape -> same shape."""
        return dropout(x, self.p, self.training)


_FAST_CLASSES = {nn.Linear: FastLinear, nn.Dropout: FastDropout}


def cpu_fast_paths_allowed(requested: bool) -> bool:
    """``requested`` unless the environment variable ``DDETR_CPU_FAST_PATHS`` is 0/false/off/no."""
    value = os.environ.get(ENV_VAR, "1").strip().lower()
    if value not in _OFF_VALUES + ("1", "true", "on", "yes"):
        raise ValueError(f"environment variable {ENV_VAR} must be 0/1 (or false/true, off/on, no/yes), got {value!r}")
    return requested and value not in _OFF_VALUES


def use_fast_layers(module: nn.Module) -> None:
    """Make every ``nn.Linear`` and ``nn.Dropout`` in ``module`` (exactly those classes, not subclasses
    such as ``nn.MultiheadAttention``'s projection) a ``FastLinear`` / ``FastDropout``, in place."""
    for child in module.modules():
        fast = _FAST_CLASSES.get(type(child))
        if fast is not None:
            # the class changes in place, so shared heads stay shared and parameters, hooks and state-dict keys stay
            child.__class__ = fast


def enable_cpu_fast_paths(detector: nn.Module) -> None:
    """Turn on the three fast paths of ``detector`` (a module with a ``backbone`` child), in place.

    The backbone's own linear and dropout layers (timm's, detectron2's) keep torch's kernels: the
    fast layers are an optimisation of this package's transformer and heads.
    """
    for name, child in detector.named_children():
        if name != "backbone":
            use_fast_layers(child)
    backbone = getattr(detector, "backbone", None)
    if hasattr(backbone, "channels_last_inference"):
        backbone.channels_last_inference = True
